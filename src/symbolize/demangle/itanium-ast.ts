// SPDX-License-Identifier: Apache-2.0
/**
 * The data model shared by the Itanium C++ demangler's parser (itanium-parse.ts) and printer
 * (itanium-print.ts): node kinds, the builtin/operator/abbreviation tables, and the limits.
 */

/* Node kinds. Small integers: they index the printer's dispatch table and keep switches cheap. */
export const enum K {
  Name,
  SubStd, // standard abbreviation (St, Sa, Ss, ...) printed as its expansion
  Qual, // a::b
  Local, // function-local entity: a = encoding, b = entity
  DefaultArg, // a = entity, n = argument number
  TypedName, // function encoding: a = name, b = function type
  Template, // a = template name, b = TArgs
  TParam, // n = index; resolved while printing against the innermost function template
  Ctor, // a = class name
  Dtor, // a = class name
  Tagged, // a = name, b = abi tag name
  Lambda, // b = Args (parameter types), n = discriminator
  Unnamed, // n = discriminator
  StructBind, // xs = names
  Clone, // a = encoding, s = suffix
  Special, // s = prefix text ("vtable for "), a = operand
  CtorVtable, // a = base (printed first), b = derived
  RefTemp, // a = name, b = number
  Number, // n
  Operator, // n = index into OPS
  ExtOperator, // a = name (vendor operator)
  Conversion, // a = type (operator T)
  Cast, // a = type (a cast used as an expression operator)
  Builtin, // s = spelling, n = literal print style
  VendorType, // a = name (u <source-name>)
  Pointer,
  Ref,
  RRef,
  Complex,
  Imaginary,
  Const,
  Volatile,
  Restrict,
  ConstThis, // function qualifiers from here ...
  VolatileThis,
  RestrictThis,
  RefThis,
  RRefThis,
  TxSafe,
  Noexcept, // b = expression or null
  Throw, // b = Args
  /* ... to here (see isFnQual) */
  VendorQual, // a = type, b = qualifier name
  FunctionType, // a = return type or null, b = Args
  ArrayType, // a = dimension or null, b = element type
  PtrMem, // a = class type, b = member type
  VectorType, // a = dimension, b = element type
  Decltype, // a = expression
  PackExpansion, // a = pattern
  Args, // xs = items (parameter / expression lists)
  TArgs, // xs = items (template argument list; also an argument pack)
  FuncParam, // n = index (0 = this)
  Literal, // a = type, b = value name
  LiteralNeg,
  Nullary, // a = operator
  Unary, // a = operator, b = operand
  Binary, // a = operator, b = left, c = right
  Trinary, // a = operator, b, c, d
  InitList, // a = type or null, b = Args
  Suffix, // postfix marker around the operand of x++ / x--: a = operand
  GlobalCD, // s = prefix, a = name
}

export interface Node {
  k: K;
  a: Node | null;
  b: Node | null;
  c: Node | null;
  d: Node | null;
  s: string;
  n: number;
  xs: Node[] | null;
  /** How many times this node is on the print stack; a third entry means a reference cycle. */
  printing: number;
}

export function mk(k: K, a: Node | null = null, b: Node | null = null, s = '', n = 0): Node {
  return { k, a, b, c: null, d: null, s, n, xs: null, printing: 0 };
}

export function mkList(k: K.Args | K.TArgs, xs: Node[]): Node {
  const node = mk(k);
  node.xs = xs;
  return node;
}

export function isFnQual(k: K): boolean {
  return k >= K.ConstThis && k <= K.Throw;
}

/* Literal print styles of builtin types (how `L <type> <value> E` is shown). */
export const enum Lit {
  Default,
  Int,
  Unsigned,
  Long,
  UnsignedLong,
  LongLong,
  UnsignedLongLong,
  Bool,
  Float,
  Void,
}

export interface BuiltinInfo {
  readonly name: string;
  readonly lit: Lit;
}

/* One-letter builtin types, indexed by letter. 'u' (vendor type) is handled by the parser. */
export const BUILTINS: Record<string, BuiltinInfo> = {
  a: { name: 'signed char', lit: Lit.Default },
  b: { name: 'bool', lit: Lit.Bool },
  c: { name: 'char', lit: Lit.Default },
  d: { name: 'double', lit: Lit.Float },
  e: { name: 'long double', lit: Lit.Float },
  f: { name: 'float', lit: Lit.Float },
  g: { name: '__float128', lit: Lit.Float },
  h: { name: 'unsigned char', lit: Lit.Default },
  i: { name: 'int', lit: Lit.Int },
  j: { name: 'unsigned int', lit: Lit.Unsigned },
  l: { name: 'long', lit: Lit.Long },
  m: { name: 'unsigned long', lit: Lit.UnsignedLong },
  n: { name: '__int128', lit: Lit.Default },
  o: { name: 'unsigned __int128', lit: Lit.Default },
  s: { name: 'short', lit: Lit.Default },
  t: { name: 'unsigned short', lit: Lit.Default },
  v: { name: 'void', lit: Lit.Void },
  w: { name: 'wchar_t', lit: Lit.Default },
  x: { name: 'long long', lit: Lit.LongLong },
  y: { name: 'unsigned long long', lit: Lit.UnsignedLongLong },
  z: { name: '...', lit: Lit.Default },
};

/* Two-letter `D?` builtins. */
export const D_BUILTINS: Record<string, BuiltinInfo> = {
  d: { name: 'decimal64', lit: Lit.Default },
  e: { name: 'decimal128', lit: Lit.Default },
  f: { name: 'decimal32', lit: Lit.Default },
  h: { name: 'half', lit: Lit.Float },
  u: { name: 'char8_t', lit: Lit.Default },
  s: { name: 'char16_t', lit: Lit.Default },
  i: { name: 'char32_t', lit: Lit.Default },
  n: { name: 'decltype(nullptr)', lit: Lit.Default },
};

/* Builtin types are leaves that are never mutated, so one shared node per letter suffices. */
export const BUILTIN_NODES: Record<string, Node> = Object.fromEntries(
  Object.entries(BUILTINS).map(([c, b]) => [c, mk(K.Builtin, null, null, b.name, b.lit)]),
);

export interface OpInfo {
  readonly code: string;
  readonly name: string;
  readonly arity: number;
}

/* Operator names with the spelling c++filt uses in expressions (trailing spaces included). */
export const OPS: readonly OpInfo[] = [
  { code: 'aN', name: '&=', arity: 2 },
  { code: 'aS', name: '=', arity: 2 },
  { code: 'aa', name: '&&', arity: 2 },
  { code: 'ad', name: '&', arity: 1 },
  { code: 'an', name: '&', arity: 2 },
  { code: 'at', name: 'alignof ', arity: 1 },
  { code: 'aw', name: 'co_await ', arity: 1 },
  { code: 'az', name: 'alignof ', arity: 1 },
  { code: 'cc', name: 'const_cast', arity: 2 },
  { code: 'cl', name: '()', arity: 2 },
  { code: 'cm', name: ',', arity: 2 },
  { code: 'co', name: '~', arity: 1 },
  { code: 'dV', name: '/=', arity: 2 },
  { code: 'dX', name: '[...]=', arity: 3 },
  { code: 'da', name: 'delete[] ', arity: 1 },
  { code: 'dc', name: 'dynamic_cast', arity: 2 },
  { code: 'de', name: '*', arity: 1 },
  { code: 'di', name: '=', arity: 2 },
  { code: 'dl', name: 'delete ', arity: 1 },
  { code: 'ds', name: '.*', arity: 2 },
  { code: 'dt', name: '.', arity: 2 },
  { code: 'dv', name: '/', arity: 2 },
  { code: 'dx', name: ']=', arity: 2 },
  { code: 'eO', name: '^=', arity: 2 },
  { code: 'eo', name: '^', arity: 2 },
  { code: 'eq', name: '==', arity: 2 },
  { code: 'fL', name: '...', arity: 3 },
  { code: 'fR', name: '...', arity: 3 },
  { code: 'fl', name: '...', arity: 2 },
  { code: 'fr', name: '...', arity: 2 },
  { code: 'ge', name: '>=', arity: 2 },
  { code: 'gs', name: '::', arity: 1 },
  { code: 'gt', name: '>', arity: 2 },
  { code: 'ix', name: '[]', arity: 2 },
  { code: 'lS', name: '<<=', arity: 2 },
  { code: 'le', name: '<=', arity: 2 },
  { code: 'li', name: 'operator"" ', arity: 1 },
  { code: 'ls', name: '<<', arity: 2 },
  { code: 'lt', name: '<', arity: 2 },
  { code: 'mI', name: '-=', arity: 2 },
  { code: 'mL', name: '*=', arity: 2 },
  { code: 'mi', name: '-', arity: 2 },
  { code: 'ml', name: '*', arity: 2 },
  { code: 'mm', name: '--', arity: 1 },
  { code: 'na', name: 'new[]', arity: 3 },
  { code: 'ne', name: '!=', arity: 2 },
  { code: 'ng', name: '-', arity: 1 },
  { code: 'nt', name: '!', arity: 1 },
  { code: 'nw', name: 'new', arity: 3 },
  { code: 'oR', name: '|=', arity: 2 },
  { code: 'oo', name: '||', arity: 2 },
  { code: 'or', name: '|', arity: 2 },
  { code: 'pL', name: '+=', arity: 2 },
  { code: 'pl', name: '+', arity: 2 },
  { code: 'pm', name: '->*', arity: 2 },
  { code: 'pp', name: '++', arity: 1 },
  { code: 'ps', name: '+', arity: 1 },
  { code: 'pt', name: '->', arity: 2 },
  { code: 'qu', name: '?', arity: 3 },
  { code: 'rM', name: '%=', arity: 2 },
  { code: 'rS', name: '>>=', arity: 2 },
  { code: 'rc', name: 'reinterpret_cast', arity: 2 },
  { code: 'rm', name: '%', arity: 2 },
  { code: 'rs', name: '>>', arity: 2 },
  { code: 'sP', name: 'sizeof...', arity: 1 },
  { code: 'sZ', name: 'sizeof...', arity: 1 },
  { code: 'sc', name: 'static_cast', arity: 2 },
  { code: 'ss', name: '<=>', arity: 2 },
  { code: 'st', name: 'sizeof ', arity: 1 },
  { code: 'sz', name: 'sizeof ', arity: 1 },
  { code: 'tr', name: 'throw', arity: 0 },
  { code: 'tw', name: 'throw ', arity: 1 },
];

export const OP_INDEX = new Map<string, number>(OPS.map((op, i) => [op.code, i]));

/* Standard abbreviations: [code, expansion as c++filt prints it (verbose), name used by ctors]. */
export const STD_SUBS: Record<string, readonly [string, string]> = {
  t: ['std', ''],
  a: ['std::allocator', 'allocator'],
  b: ['std::basic_string', 'basic_string'],
  s: ['std::basic_string<char, std::char_traits<char>, std::allocator<char> >', 'basic_string'],
  i: ['std::basic_istream<char, std::char_traits<char> >', 'basic_istream'],
  o: ['std::basic_ostream<char, std::char_traits<char> >', 'basic_ostream'],
  d: ['std::basic_iostream<char, std::char_traits<char> >', 'basic_iostream'],
};

/** Limits that keep hostile input cheap. Real symbols stay far below all of them. */
export const ITANIUM_LIMITS = {
  /** Longest mangled name we try; longer ones are returned unchanged. */
  maxInput: 1 << 16,
  /** Parser recursion depth. */
  maxParseDepth: 512,
  /** Printer recursion depth. */
  maxPrintDepth: 1024,
  /** Longest demangled output. */
  maxOutput: 1 << 18,
  /** Printer steps (node visits), guards against outputs that stay short but take long. */
  maxPrintSteps: 1 << 20,
} as const;

/** Thrown inside the demangler only; caught by demangleItanium. */
export const FAIL: { readonly fail: true } = { fail: true };

export function fail(): never {
  throw FAIL;
}

export const CH_0 = 48;
export const CH_A = 65;

export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
export function isUpper(c: number): boolean {
  return c >= 65 && c <= 90;
}
export function isLower(c: number): boolean {
  return c >= 97 && c <= 122;
}

/** Suffixes of integer literals by Lit.Int ... Lit.UnsignedLongLong. */
export const INT_SUFFIX = ['', 'u', 'l', 'ul', 'll', 'ull'] as const;
