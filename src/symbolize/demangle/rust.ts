// SPDX-License-Identifier: Apache-2.0
/**
 * Rust symbol demangler: legacy (`_ZN...17h<hash>E`) and v0 (`_R...`) manglings.
 *
 * Output follows rustc-demangle's alternate form (`{:#}`), which is what Rust tooling shows: no
 * `::h<hash>` segment, no `[<disambiguator>]` after crate names, no type suffix on const generic
 * integers. That is also exactly what `c++filt -i` (libiberty, non-verbose) prints, except where
 * rustc-demangle goes further, which we follow:
 * - legacy `$u<hex>$` escapes of non-ASCII characters are decoded (c++filt keeps them verbatim);
 * - `.suffix` parts such as `.cold` are kept after the name (c++filt drops them); LLVM's
 *   `.llvm.<digits>` suffix is dropped by both;
 * - v0 const generics beyond integers, bool and char (str, arrays, tuples, structs) are printed
 *   (c++filt gives up on them).
 * Plain `c++filt` (verbose) differs only by also printing the hashes and disambiguators.
 */

/** Limits that keep hostile input cheap; real symbols stay far below them. */
export const RUST_LIMITS = {
  maxInput: 1 << 16,
  /** Nesting of v0 paths/types/consts, as rustc-demangle's MAX_DEPTH. */
  maxDepth: 500,
  maxOutput: 1 << 18,
  /** Parser steps including re-parses through backrefs, which can otherwise blow up. */
  maxSteps: 1 << 20,
} as const;

const FAIL: { readonly fail: true } = { fail: true };
function fail(): never {
  throw FAIL;
}

/**
 * Demangles a Rust symbol; returns null when `sym` is not a Rust symbol (it may still be C++) or
 * is malformed. Never throws.
 */
export function demangleRust(sym: string): string | null {
  if (sym.length < 3 || sym.length > RUST_LIMITS.maxInput) return null;
  sym = stripLlvmSuffix(sym);
  try {
    if (sym.startsWith('_R')) return demangleV0(sym);
    if (sym.startsWith('_ZN')) return demangleLegacy(sym);
  } catch (e) {
    if (e === FAIL) return null;
    return null; // e.g. RangeError from an unexpectedly deep stack: treat as "cannot demangle"
  }
  return null;
}

/** ThinLTO renames internal symbols to `<name>.llvm.<number>`; that part means nothing to users. */
function stripLlvmSuffix(s: string): string {
  const i = s.indexOf('.llvm.');
  if (i < 0) return s;
  for (let j = i + 6; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (!((c >= 48 && c <= 57) || (c >= 65 && c <= 70) || c === 64)) return s; // [0-9A-F@]
  }
  return s.slice(0, i);
}

/** rustc-demangle keeps a trailing `.suffix` only if it is made of printable ASCII. */
function isSymbolLike(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 32 || c >= 127) return false;
  }
  return true;
}

function base62Digit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 122) return c - 87;
  if (c >= 65 && c <= 90) return c - 29;
  return -1;
}

function isLowerHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102);
}

/* ------------------------------------------------------------------------------------------------
 * Legacy: `_ZN` (<decimal length> <ident>)+ `E`, the last ident being `h` + 16 hex digits.
 */

function demangleLegacy(sym: string): string | null {
  const idents: string[] = [];
  let p = 3;
  const n = sym.length;
  for (;;) {
    if (p >= n) return null;
    let c = sym.charCodeAt(p);
    if (c === 69 /* E */) break;
    if (c < 48 || c > 57) return null;
    let len = 0;
    while (c >= 48 && c <= 57) {
      len = len * 10 + (c - 48);
      if (len > n) return null;
      c = sym.charCodeAt(++p);
    }
    if (len === 0 || p + len > n) return null;
    idents.push(sym.slice(p, p + len));
    p += len;
  }
  const suffix = sym.slice(p + 1);
  if (suffix !== '' && !(suffix.charCodeAt(0) === 46 && isSymbolLike(suffix))) return null;
  // Same test as libiberty, so exactly the symbols c++filt treats as Rust are Rust here; the rest
  // (e.g. C++ `_ZN1A1xE`) go to the C++ demangler.
  if (idents.length < 2 || !isLegacyHash(idents[idents.length - 1]!)) return null;
  for (const id of idents) {
    for (let i = 0; i < id.length; i++) {
      const ch = id.charCodeAt(i);
      const ok =
        (ch >= 48 && ch <= 57) ||
        (ch >= 65 && ch <= 90) ||
        (ch >= 97 && ch <= 122) ||
        ch === 95 || // _
        ch === 36 || // $
        ch === 46 || // .
        ch === 58; // :
      if (!ok) return null;
    }
  }
  let out = '';
  for (let i = 0; i < idents.length - 1; i++) {
    if (i > 0) out += '::';
    out += legacyIdent(idents[i]!);
  }
  return out + suffix;
}

/** `h` + 16 lowercase hex digits using at least 5 distinct digits (a real hash, not a name). */
function isLegacyHash(id: string): boolean {
  if (id.length !== 17 || id.charCodeAt(0) !== 104 /* h */) return false;
  let seen = 0;
  for (let i = 1; i < 17; i++) {
    const c = id.charCodeAt(i);
    if (!isLowerHex(c)) return false;
    seen |= 1 << (c <= 57 ? c - 48 : c - 87);
  }
  let count = 0;
  for (; seen; seen &= seen - 1) count++;
  return count >= 5;
}

const LEGACY_ESCAPES: Record<string, string> = {
  SP: '@',
  BP: '*',
  RF: '&',
  LT: '<',
  GT: '>',
  LP: '(',
  RP: ')',
  C: ',',
};

/** Decodes `$LT$`-style escapes and `..` (rustc wrote `::` as `..` inside one segment). */
function legacyIdent(id: string): string {
  let rest = id;
  if (rest.startsWith('_$')) rest = rest.slice(1);
  let out = '';
  while (rest.length > 0) {
    const c = rest.charCodeAt(0);
    if (c === 46 /* . */) {
      if (rest.charCodeAt(1) === 46) {
        out += '::';
        rest = rest.slice(2);
      } else {
        out += '.';
        rest = rest.slice(1);
      }
    } else if (c === 36 /* $ */) {
      const end = rest.indexOf('$', 1);
      if (end < 0) break;
      const esc = rest.slice(1, end);
      let ch = LEGACY_ESCAPES[esc];
      if (ch === undefined && esc.charCodeAt(0) === 117 /* u */ && esc.length > 1) {
        const digits = esc.slice(1);
        let allHex = true;
        for (let i = 0; i < digits.length; i++) if (!isLowerHex(digits.charCodeAt(i))) allHex = false;
        const v = allHex && digits.length <= 8 ? parseInt(digits, 16) : -1;
        if (v >= 0 && v <= 0x10ffff && !(v >= 0xd800 && v <= 0xdfff) && !isControl(v)) ch = String.fromCodePoint(v);
      }
      if (ch === undefined) break; // unknown escape: the rest is printed verbatim
      out += ch;
      rest = rest.slice(end + 1);
    } else {
      let i = 1;
      while (i < rest.length && rest.charCodeAt(i) !== 36 && rest.charCodeAt(i) !== 46) i++;
      out += rest.slice(0, i);
      rest = rest.slice(i);
    }
  }
  return out + rest;
}

function isControl(cp: number): boolean {
  return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
}

/* ------------------------------------------------------------------------------------------------
 * v0: https://doc.rust-lang.org/rustc/symbol-mangling/v0.html
 */

function demangleV0(sym: string): string | null {
  const inner = sym.slice(2);
  const c0 = inner.charCodeAt(0);
  if (!(c0 >= 65 && c0 <= 90)) return null; // paths start with an uppercase tag
  for (let i = 0; i < inner.length; i++) if (inner.charCodeAt(i) >= 0x80) return null;
  let end = inner.indexOf('.');
  const suffix = end < 0 ? '' : inner.slice(end);
  if (end < 0) end = inner.length;
  if (suffix !== '' && !isSymbolLike(suffix)) return null;
  const pr = new V0Printer(inner.slice(0, end));
  pr.path(true);
  // The instantiating crate (another path) is not shown.
  if (pr.p < pr.s.length) {
    const c = pr.s.charCodeAt(pr.p);
    if (!(c >= 65 && c <= 90)) return null;
    pr.skipping++;
    pr.path(false);
    pr.skipping--;
  }
  if (pr.p !== pr.s.length) return null;
  return pr.out + suffix;
}

const BASIC_TYPES: Record<string, string> = {
  b: 'bool',
  c: 'char',
  e: 'str',
  u: '()',
  a: 'i8',
  s: 'i16',
  l: 'i32',
  x: 'i64',
  n: 'i128',
  i: 'isize',
  h: 'u8',
  t: 'u16',
  m: 'u32',
  y: 'u64',
  o: 'u128',
  j: 'usize',
  f: 'f32',
  d: 'f64',
  z: '!',
  p: '_',
  v: '...',
};

interface Ident {
  ascii: string;
  punycode: string;
}

class V0Printer {
  readonly s: string;
  p = 0;
  out = '';
  /** > 0 while parsing without printing (impl paths, the instantiating crate). */
  skipping = 0;
  depth = 0;
  steps = 0;
  boundLifetimes = 0;

  constructor(s: string) {
    this.s = s;
  }

  print(str: string): void {
    if (this.skipping) return;
    this.out += str;
    if (this.out.length > RUST_LIMITS.maxOutput) fail();
  }

  peek(): string {
    return this.s.charAt(this.p);
  }

  next(): string {
    if (this.p >= this.s.length) fail();
    return this.s.charAt(this.p++);
  }

  eat(c: string): boolean {
    if (this.s.charAt(this.p) === c) {
      this.p++;
      return true;
    }
    return false;
  }

  push(): void {
    if (++this.depth > RUST_LIMITS.maxDepth || ++this.steps > RUST_LIMITS.maxSteps) fail();
  }

  /**
   * `_` is 0, `<base-62 digits>_` is value + 1. Values are u64 that wrap around like c++filt's
   * (crate disambiguators are 64-bit hashes); above 2^53 the returned number is approximate, which
   * only matters where one is printed, see exactDisambiguator().
   */
  integer62(): number {
    if (this.eat('_')) return 0;
    let x = 0;
    for (;;) {
      const d = base62Digit(this.s.charCodeAt(this.p++));
      if (d < 0) break;
      x = (x * 62 + d) % 18446744073709551616;
    }
    if (this.s.charCodeAt(this.p - 1) !== 95) fail();
    return x + 1;
  }

  optInteger62(tag: string): number {
    if (!this.eat(tag)) return 0;
    return this.integer62() + 1;
  }

  disambiguator(): number {
    return this.optInteger62('s');
  }

  /** The exact u64 value of the disambiguator parsed at `start` (`s<base-62>_`), for printing. */
  exactDisambiguator(start: number, value: number): string {
    if (value <= Number.MAX_SAFE_INTEGER) return String(value);
    let x = 0n;
    for (let i = start + 1; this.s.charCodeAt(i) !== 95; i++) {
      x = BigInt.asUintN(64, x * 62n + BigInt(base62Digit(this.s.charCodeAt(i))));
    }
    return String(BigInt.asUintN(64, BigInt.asUintN(64, x + 1n) + 1n));
  }

  ident(): Ident {
    const punycode = this.eat('u');
    let c = this.s.charCodeAt(this.p);
    if (!(c >= 48 && c <= 57)) fail();
    this.p++;
    let len = c - 48;
    if (len !== 0) {
      for (c = this.s.charCodeAt(this.p); c >= 48 && c <= 57; c = this.s.charCodeAt(++this.p)) {
        len = len * 10 + (c - 48);
        if (len > this.s.length) fail();
      }
    }
    this.eat('_');
    const start = this.p;
    if (start + len > this.s.length) fail();
    this.p += len;
    const id = this.s.slice(start, this.p);
    if (!punycode) return { ascii: id, punycode: '' };
    const us = id.lastIndexOf('_');
    const ident = us < 0 ? { ascii: '', punycode: id } : { ascii: id.slice(0, us), punycode: id.slice(us + 1) };
    if (ident.punycode === '') fail();
    return ident;
  }

  printIdent(id: Ident): void {
    if (this.skipping) return;
    if (id.punycode === '') {
      this.print(id.ascii);
      return;
    }
    const decoded = decodePunycode(id.ascii, id.punycode);
    if (decoded !== null) this.print(decoded);
    else this.print(`punycode{${id.ascii === '' ? '' : id.ascii + '-'}${id.punycode}}`);
  }

  /** Runs `f` on the text a backref points at (earlier in the symbol), then resumes here. */
  backref(f: () => void): void {
    const start = this.p - 1;
    const i = this.integer62();
    if (i >= start) fail(); // only backwards, so no loops
    if (this.skipping) return;
    const save = this.p;
    this.p = i;
    f();
    this.p = save;
  }

  path(inValue: boolean): void {
    this.push();
    const tag = this.next();
    switch (tag) {
      case 'C': {
        this.disambiguator(); // shown by c++filt as `crate[hash]`; we leave it out
        this.printIdent(this.ident());
        break;
      }
      case 'N': {
        const ns = this.next();
        const nc = ns.charCodeAt(0);
        if (!((nc >= 65 && nc <= 90) || (nc >= 97 && nc <= 122))) fail();
        this.path(inValue);
        const disStart = this.p;
        const dis = this.disambiguator();
        const name = this.ident();
        const named = name.ascii !== '' || name.punycode !== '';
        if (nc >= 65 && nc <= 90) {
          // Special namespaces: closures, shims, ...
          this.print('::{');
          this.print(ns === 'C' ? 'closure' : ns === 'S' ? 'shim' : ns);
          if (named) {
            this.print(':');
            this.printIdent(name);
          }
          this.print(`#${this.exactDisambiguator(disStart, dis)}}`);
        } else if (named) {
          this.print('::');
          this.printIdent(name);
        }
        break;
      }
      case 'M':
      case 'X':
      case 'Y': {
        if (tag !== 'Y') {
          // The impl's own path is not shown.
          this.disambiguator();
          this.skipping++;
          this.path(false);
          this.skipping--;
        }
        this.print('<');
        this.type();
        if (tag !== 'M') {
          this.print(' as ');
          this.path(false);
        }
        this.print('>');
        break;
      }
      case 'I': {
        this.path(inValue);
        if (inValue) this.print('::');
        this.print('<');
        this.sepList(() => this.genericArg(), ', ');
        this.print('>');
        break;
      }
      case 'B':
        this.backref(() => this.path(inValue));
        break;
      default:
        fail();
    }
    this.depth--;
  }

  sepList(f: () => void, sep: string): number {
    let i = 0;
    while (!this.eat('E')) {
      if (this.p >= this.s.length) fail();
      if (i > 0) this.print(sep);
      f();
      i++;
    }
    return i;
  }

  genericArg(): void {
    if (this.eat('L')) this.lifetime(this.integer62());
    else if (this.eat('K')) this.constValue(false);
    else this.type();
  }

  lifetime(lt: number): void {
    if (this.skipping) return;
    this.print("'");
    if (lt === 0) {
      this.print('_');
      return;
    }
    const depth = this.boundLifetimes - lt;
    if (depth < 0) fail();
    this.print(depth < 26 ? String.fromCharCode(97 + depth) : `_${depth}`);
  }

  /** `for<'a, ...>` binders of fn pointers and dyn types. */
  inBinder(f: () => void): void {
    const n = this.optInteger62('G');
    if (this.skipping) {
      f();
      return;
    }
    if (n > 0) {
      if (n > 1000) fail();
      this.print('for<');
      for (let i = 0; i < n; i++) {
        if (i > 0) this.print(', ');
        this.boundLifetimes++;
        this.lifetime(1);
      }
      this.print('> ');
    }
    f();
    this.boundLifetimes -= n;
  }

  type(): void {
    const tag = this.next();
    const basic = BASIC_TYPES[tag];
    if (basic !== undefined) {
      this.print(basic);
      return;
    }
    this.push();
    switch (tag) {
      case 'R':
      case 'Q': {
        this.print('&');
        if (this.eat('L')) {
          const lt = this.integer62();
          if (lt !== 0) {
            this.lifetime(lt);
            this.print(' ');
          }
        }
        if (tag === 'Q') this.print('mut ');
        this.type();
        break;
      }
      case 'P':
      case 'O':
        this.print(tag === 'P' ? '*const ' : '*mut ');
        this.type();
        break;
      case 'A':
      case 'S':
        this.print('[');
        this.type();
        if (tag === 'A') {
          this.print('; ');
          this.constValue(true);
        }
        this.print(']');
        break;
      case 'T': {
        this.print('(');
        const count = this.sepList(() => this.type(), ', ');
        if (count === 1) this.print(',');
        this.print(')');
        break;
      }
      case 'F':
        this.inBinder(() => this.fnSig());
        break;
      case 'D': {
        this.print('dyn ');
        this.inBinder(() => {
          this.sepList(() => this.dynTrait(), ' + ');
        });
        if (!this.eat('L')) fail();
        const lt = this.integer62();
        if (lt !== 0) {
          this.print(' + ');
          this.lifetime(lt);
        }
        break;
      }
      case 'B':
        this.backref(() => this.type());
        break;
      default:
        this.p--; // a named type: a path
        this.path(false);
    }
    this.depth--;
  }

  fnSig(): void {
    const isUnsafe = this.eat('U');
    let abi: string | null = null;
    if (this.eat('K')) {
      if (this.eat('C')) abi = 'C';
      else {
        const id = this.ident();
        if (id.ascii === '' || id.punycode !== '') fail();
        abi = id.ascii;
      }
    }
    if (isUnsafe) this.print('unsafe ');
    // `-` in ABI names was mangled as `_`.
    if (abi !== null) this.print(`extern "${abi.replace(/_/g, '-')}" `);
    this.print('fn(');
    this.sepList(() => this.type(), ', ');
    this.print(')');
    if (!this.eat('u')) {
      this.print(' -> ');
      this.type();
    }
  }

  dynTrait(): void {
    let open = this.pathMaybeOpenGenerics();
    while (this.eat('p')) {
      this.print(open ? ', ' : '<');
      open = true;
      this.printIdent(this.ident());
      this.print(' = ');
      this.type();
    }
    if (open) this.print('>');
  }

  /** Like path(), but leaves `<...` open so dynTrait can add `Assoc = T` bindings. */
  pathMaybeOpenGenerics(): boolean {
    if (this.eat('B')) {
      let open = false;
      this.backref(() => {
        open = this.pathMaybeOpenGenerics();
      });
      return open;
    }
    if (this.eat('I')) {
      this.path(false);
      this.print('<');
      this.sepList(() => this.genericArg(), ', ');
      return true;
    }
    this.path(false);
    return false;
  }

  hexNibbles(): string {
    const start = this.p;
    for (;;) {
      const c = this.s.charCodeAt(this.p);
      if (c === 95) break;
      if (!isLowerHex(c)) fail();
      this.p++;
    }
    const hex = this.s.slice(start, this.p);
    this.p++; // '_'
    return hex;
  }

  constValue(inValue: boolean): void {
    if (this.eat('B')) {
      this.backref(() => this.constValue(inValue));
      return;
    }
    const tag = this.next();
    this.push();
    // Literals need no braces; other expressions do, unless nested in another expression.
    let braced = false;
    const brace = (): void => {
      if (!inValue) {
        braced = true;
        this.print('{');
      }
    };
    switch (tag) {
      case 'p':
        this.print('_');
        break;
      case 'h':
      case 't':
      case 'm':
      case 'y':
      case 'o':
      case 'j':
        this.print(hexToDecimal(this.hexNibbles()));
        break;
      case 'a':
      case 's':
      case 'l':
      case 'x':
      case 'n':
      case 'i':
        if (this.eat('n')) this.print('-');
        this.print(hexToDecimal(this.hexNibbles()));
        break;
      case 'b': {
        const v = hexValue(this.hexNibbles());
        if (v === 0) this.print('false');
        else if (v === 1) this.print('true');
        else fail();
        break;
      }
      case 'c': {
        const v = hexValue(this.hexNibbles());
        if (v < 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) fail();
        this.print(quoteChars("'", String.fromCodePoint(v)));
        break;
      }
      case 'e':
        // `str` value: shown as `*"..."` since "..." alone would be a &str.
        brace();
        this.print('*');
        this.strLiteral();
        break;
      case 'R':
      case 'Q':
        if (tag === 'R' && this.eat('e')) this.strLiteral();
        else {
          brace();
          this.print(tag === 'R' ? '&' : '&mut ');
          this.constValue(true);
        }
        break;
      case 'A':
        brace();
        this.print('[');
        this.sepList(() => this.constValue(true), ', ');
        this.print(']');
        break;
      case 'T': {
        brace();
        this.print('(');
        const count = this.sepList(() => this.constValue(true), ', ');
        if (count === 1) this.print(',');
        this.print(')');
        break;
      }
      case 'V': {
        brace();
        this.path(true);
        const kind = this.next();
        if (kind === 'T') {
          this.print('(');
          this.sepList(() => this.constValue(true), ', ');
          this.print(')');
        } else if (kind === 'S') {
          this.print(' { ');
          this.sepList(() => {
            this.disambiguator();
            this.printIdent(this.ident());
            this.print(': ');
            this.constValue(true);
          }, ', ');
          this.print(' }');
        } else if (kind !== 'U') fail();
        break;
      }
      default:
        fail();
    }
    if (braced) this.print('}');
    this.depth--;
  }

  strLiteral(): void {
    const hex = this.hexNibbles();
    if (hex.length % 2 !== 0) fail();
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return fail();
    }
    this.print(quoteChars('"', text));
  }
}

/** Hex digits to decimal text; values beyond u64 are shown as `0x...` like rustc-demangle. */
function hexToDecimal(hex: string): string {
  let i = 0;
  while (i < hex.length && hex.charCodeAt(i) === 48) i++;
  const digits = hex.slice(i);
  if (digits === '') return '0';
  if (digits.length > 16) return '0x' + hex;
  return BigInt('0x' + digits).toString();
}

function hexValue(hex: string): number {
  let i = 0;
  while (i < hex.length && hex.charCodeAt(i) === 48) i++;
  if (hex.length - i > 8) return -1;
  return hex.length === i ? 0 : parseInt(hex.slice(i), 16);
}

/** Quotes like Rust's `{:?}` of a char/str (escape_debug), not escaping the other quote kind. */
function quoteChars(quote: string, text: string): string {
  let out = quote;
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += '\\' + ch;
    else if (isControl(cp)) out += `\\u{${cp.toString(16)}}`;
    else out += ch;
  }
  return out + quote;
}

/**
 * Punycode (RFC 3492) as used by v0 identifiers: `ascii` is the basic part, `puny` the encoded
 * insertions (with `_` instead of `-` as separator, already split off). Null when invalid or
 * longer than rustc-demangle's limit, in which case the raw form is printed.
 */
function decodePunycode(ascii: string, puny: string): string | null {
  const out: number[] = [];
  for (let i = 0; i < ascii.length; i++) out.push(ascii.charCodeAt(i));
  const base = 36;
  const tMin = 1;
  const tMax = 26;
  const skew = 38;
  let damp = 700;
  let bias = 72;
  let i = 0;
  let n = 0x80;
  let pos = 0;
  while (pos < puny.length) {
    let delta = 0;
    let w = 1;
    let k = 0;
    for (;;) {
      k += base;
      const t = Math.min(Math.max(k - bias, tMin), tMax);
      if (pos >= puny.length) return null;
      const c = puny.charCodeAt(pos++);
      let d: number;
      if (c >= 97 && c <= 122) d = c - 97;
      else if (c >= 48 && c <= 57) d = 26 + (c - 48);
      else return null;
      delta += d * w;
      if (delta > 0xffffffff) return null;
      if (d < t) break;
      w *= base - t;
      if (w > 0xffffffff) return null;
    }
    const len = out.length;
    i += delta;
    n += Math.floor(i / (len + 1));
    if (i > 0xffffffff || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff)) return null;
    i %= len + 1;
    if (len >= 128) return null;
    out.splice(i, 0, n);
    i++;
    delta = Math.floor(delta / damp);
    damp = 2;
    delta += Math.floor(delta / (len + 1));
    k = 0;
    while (delta > ((base - tMin) * tMax) >> 1) {
      delta = Math.floor(delta / (base - tMin));
      k += base;
    }
    bias = k + Math.floor(((base - tMin + 1) * delta) / (delta + skew));
  }
  return String.fromCodePoint(...out);
}
