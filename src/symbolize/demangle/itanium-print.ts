// SPDX-License-Identifier: Apache-2.0
/**
 * Printer of the node graph built by itanium-parse.ts, producing exactly c++filt's text.
 *
 * C++ declarators are written inside-out (`int (*f())[3]`), so the printer keeps a stack of
 * pending "modifiers" (pointers, references, cv-qualifiers, the function name and its parameter
 * list) that a function or array type consumes at the right spot; whatever is left is printed as
 * a suffix. `T_` is resolved against the innermost function template being printed, which is how
 * c++filt does it (not always what the ABI intends, but what users see elsewhere).
 */
import { INT_SUFFIX, ITANIUM_LIMITS, K, Lit, OPS, fail, isFnQual, isLower, type Node } from './itanium-ast';

/** Function templates being printed, innermost first: what `T_` refers to. */
interface Templates {
  decl: Node; // a Template node
  next: Templates | null;
}

interface Mod {
  node: Node;
  printed: boolean;
  next: Mod | null;
  /** The template context when the modifier was pushed; restored when it is printed. */
  templates: Templates | null;
}

export class Printer {
  out = '';
  /**
   * Last character appended. Deliberately not updated when a dangling ", " is removed after an empty
   * pack: c++filt behaves the same way, which is why it prints `X<Y<int>>` in that one case.
   */
  lastCh = 0;
  mods: Mod | null = null;
  templates: Templates | null = null;
  /** The template whose name is being printed; a conversion operator's type may refer to it. */
  currentTemplate: Node | null = null;
  /** Template context captured the first time a `T_` under a reference was printed. */
  savedScopes: Map<Node, Templates | null> | null = null;
  packIndex = 0;
  lambdaArg = 0;
  depth = 0;
  steps = 0;

  last(): number {
    return this.lastCh;
  }

  append(s: string): void {
    this.out += s;
    if (s.length !== 0) this.lastCh = s.charCodeAt(s.length - 1);
    if (this.out.length > ITANIUM_LIMITS.maxOutput) fail();
  }

  comp(dc: Node | null): void {
    if (dc === null) return fail();
    if (dc.k === K.Builtin) {
      // Builtin nodes are shared by all calls (see BUILTIN_NODES), so they must not carry the
      // re-entrancy counter below: an abort while one is printed would leave it set for good.
      this.append(dc.s);
      return;
    }
    if (dc.printing > 1) return fail(); // a reference cycle (the same node nested three times)
    if (++this.depth > ITANIUM_LIMITS.maxPrintDepth || ++this.steps > ITANIUM_LIMITS.maxPrintSteps) fail();
    dc.printing++;
    const h = PRINT[dc.k];
    if (h === undefined) return fail();
    h(this, dc);
    dc.printing--;
    this.depth--;
  }

  /** The argument `T_` currently denotes, or null when the index is out of range. */
  lookupTParam(dc: Node): Node | null {
    if (!this.templates) return fail();
    return this.templates.decl.b!.xs![dc.n] ?? null;
  }

  pushMod(node: Node): Mod {
    const m: Mod = { node, printed: false, next: this.mods, templates: this.templates };
    this.mods = m;
    return m;
  }

  indexPack(a: Node): Node {
    if (a.k !== K.TArgs) return a;
    if (this.packIndex < 0) return a;
    const item = a.xs![this.packIndex];
    if (!item) return fail();
    return item;
  }

  /** Whether `sub` is being printed, or `dc` is being printed further out than this visit. */
  onStack(sub: Node, dc: Node): boolean {
    return sub.printing > 0 || dc.printing > 1;
  }

  /** `operator T`: T may use the parameters of the template the operator's name belongs to. */
  conversion(type: Node): void {
    const hold = this.templates;
    if (this.currentTemplate) this.templates = { decl: this.currentTemplate, next: hold };
    if (type.k !== K.Template) {
      this.comp(type);
      this.templates = hold;
      return;
    }
    this.comp(type.a);
    this.templates = hold;
    if (this.last() === 60 /* < */) this.append(' ');
    this.append('<');
    this.comp(type.b);
    if (this.last() === 62 /* > */) this.append(' ');
    this.append('>');
  }

  /** Comma-separated list; trailing empty items (empty packs) leave no dangling ", ". */
  list(xs: Node[]): void {
    if (xs.length === 0) return;
    this.comp(xs[0]!);
    let keep = this.out.length;
    for (let i = 1; i < xs.length; i++) {
      this.append(', ');
      const before = this.out.length;
      this.comp(xs[i]!);
      if (this.out.length !== before) keep = this.out.length;
    }
    if (keep !== this.out.length) this.out = this.out.slice(0, keep);
  }

  typedName(dc: Node): void {
    const hold = this.mods;
    // A function starts a fresh declarator: outer modifiers (a pointer to a local class, say) must
    // not attach to it. Its name and cv/ref qualifiers become the pending modifiers of the function
    // type, so the declarator lands in the right place for function-pointer returns.
    this.mods = null;
    const pushed: Mod[] = [];
    let tn = dc.a!;
    for (;;) {
      if (pushed.length >= 4) fail();
      pushed.push(this.pushMod(tn));
      if (!isFnQual(tn.k)) break;
      tn = tn.a!;
    }
    if (tn.k === K.Local) {
      // Qualifiers on a local entity apply to the whole function.
      let e = tn.b!;
      if (e.k === K.DefaultArg) e = e.a!;
      const top = this.mods!;
      while (isFnQual(e.k)) {
        if (pushed.length >= 4) fail();
        const m: Mod = { node: e, printed: false, next: top.next, templates: this.templates };
        top.next = m;
        pushed.splice(pushed.length - 1, 0, m);
        e = e.a!;
      }
      tn = e;
    }
    // A function template's parameters are what `T_` means inside its signature.
    const holdTemplates = this.templates;
    if (tn.k === K.Template) this.templates = { decl: tn, next: holdTemplates };
    this.comp(dc.b);
    this.templates = holdTemplates;
    for (let i = pushed.length - 1; i >= 0; i--) {
      const m = pushed[i]!;
      if (!m.printed) {
        this.append(' ');
        this.printMod(m.node);
      }
    }
    this.mods = hold;
  }

  modifier(dc: Node, inner: Node): void {
    const m = this.pushMod(dc);
    this.comp(inner);
    if (!m.printed) this.printMod(dc);
    this.mods = m.next;
  }

  printMod(mod: Node): void {
    switch (mod.k) {
      case K.Restrict:
      case K.RestrictThis:
        this.append(' restrict');
        return;
      case K.Volatile:
      case K.VolatileThis:
        this.append(' volatile');
        return;
      case K.Const:
      case K.ConstThis:
        this.append(' const');
        return;
      case K.TxSafe:
        this.append(' transaction_safe');
        return;
      case K.Noexcept:
        this.append(' noexcept');
        if (mod.b) {
          this.append('(');
          this.comp(mod.b);
          this.append(')');
        }
        return;
      case K.Throw:
        this.append(' throw');
        if (mod.b) {
          this.append('(');
          this.comp(mod.b);
          this.append(')');
        }
        return;
      case K.VendorQual:
        this.append(' ');
        this.comp(mod.b);
        return;
      case K.Pointer:
        this.append('*');
        return;
      case K.RefThis:
        this.append(' &');
        return;
      case K.Ref:
        this.append('&');
        return;
      case K.RRefThis:
        this.append(' &&');
        return;
      case K.RRef:
        this.append('&&');
        return;
      case K.Complex:
        this.append(' _Complex');
        return;
      case K.Imaginary:
        this.append(' _Imaginary');
        return;
      case K.PtrMem:
        if (this.last() !== 40 /* ( */) this.append(' ');
        this.comp(mod.a);
        this.append('::*');
        return;
      case K.TypedName:
        this.comp(mod.a);
        return;
      case K.VectorType:
        this.append(' __vector(');
        this.comp(mod.a);
        this.append(')');
        return;
      default:
        this.comp(mod);
    }
  }

  modList(mods: Mod | null, suffix: boolean): void {
    for (let m = mods; m; m = m.next) {
      if (m.printed || (!suffix && isFnQual(m.node.k))) continue;
      m.printed = true;
      const k = m.node.k;
      const holdTemplates = this.templates;
      this.templates = m.templates;
      if (k === K.FunctionType) {
        this.functionType(m.node, m.next);
        this.templates = holdTemplates;
        return;
      }
      if (k === K.ArrayType) {
        this.arrayType(m.node, m.next);
        this.templates = holdTemplates;
        return;
      }
      if (k === K.Local) {
        const hold = this.mods;
        this.mods = null;
        this.comp(m.node.a);
        this.mods = hold;
        this.append('::');
        let dc = m.node.b!;
        if (dc.k === K.DefaultArg) {
          this.append(`{default arg#${dc.n + 1}}::`);
          dc = dc.a!;
        }
        while (isFnQual(dc.k)) dc = dc.a!;
        this.comp(dc);
        this.templates = holdTemplates;
        return;
      }
      this.printMod(m.node);
      this.templates = holdTemplates;
    }
  }

  functionType(dc: Node, mods: Mod | null): void {
    let needParen = false;
    let needSpace = false;
    for (let p = mods; p; p = p.next) {
      if (p.printed) break;
      switch (p.node.k) {
        case K.Pointer:
        case K.Ref:
        case K.RRef:
          needParen = true;
          break;
        case K.Restrict:
        case K.Volatile:
        case K.Const:
        case K.VendorQual:
        case K.Complex:
        case K.Imaginary:
        case K.PtrMem:
          needSpace = true;
          needParen = true;
          break;
        default:
          break;
      }
      if (needParen) break;
    }
    if (needParen) {
      if (!needSpace) {
        const l = this.last();
        if (l !== 40 /* ( */ && l !== 42 /* * */) needSpace = true;
      }
      if (needSpace && this.last() !== 32) this.append(' ');
      this.append('(');
    }
    const hold = this.mods;
    this.mods = null;
    this.modList(mods, false);
    if (needParen) this.append(')');
    this.append('(');
    if (dc.b) this.comp(dc.b);
    this.append(')');
    this.modList(mods, true);
    this.mods = hold;
  }

  arrayTypeComp(dc: Node): void {
    const hold = this.mods;
    const own = this.pushMod(dc);
    // cv-qualifiers on an array apply to its elements: copy pending ones below us.
    const copied: Node[] = [];
    for (let p = hold; p && (p.node.k === K.Restrict || p.node.k === K.Volatile || p.node.k === K.Const); p = p.next) {
      if (!p.printed) {
        if (copied.length >= 3) fail();
        this.mods = { node: p.node, printed: false, next: this.mods, templates: p.templates };
        p.printed = true;
        copied.push(p.node);
      }
    }
    this.comp(dc.b);
    this.mods = hold;
    if (own.printed) return;
    for (let i = copied.length - 1; i >= 0; i--) this.printMod(copied[i]!);
    this.arrayType(dc, this.mods);
  }

  arrayType(dc: Node, mods: Mod | null): void {
    let needSpace = true;
    if (mods) {
      let needParen = false;
      for (let p: Mod | null = mods; p; p = p.next) {
        if (!p.printed) {
          if (p.node.k === K.ArrayType) needSpace = false;
          else {
            needParen = true;
            needSpace = true;
          }
          break;
        }
      }
      if (needParen) this.append(' (');
      this.modList(mods, false);
      if (needParen) this.append(')');
    }
    if (needSpace) this.append(' ');
    this.append('[');
    if (dc.a) this.comp(dc.a);
    this.append(']');
  }

  /** The argument pack a pack expansion iterates over, if any. */
  findPack(dc: Node | null): Node | null {
    if (dc === null) return null;
    if (++this.steps > ITANIUM_LIMITS.maxPrintSteps) fail();
    switch (dc.k) {
      case K.TParam: {
        const a = this.lookupTParam(dc);
        return a && a.k === K.TArgs ? a : null;
      }
      case K.PackExpansion:
      case K.Lambda:
      case K.Name:
      case K.Tagged:
      case K.Operator:
      case K.Builtin:
      case K.SubStd:
      case K.FuncParam:
      case K.Unnamed:
      case K.DefaultArg:
      case K.Number:
      case K.StructBind:
        return null;
      case K.ExtOperator:
      case K.Ctor:
      case K.Dtor:
        return this.findPack(dc.a);
      case K.Args:
      case K.TArgs: {
        for (const x of dc.xs!) {
          const a = this.findPack(x);
          if (a) return a;
        }
        return null;
      }
      default:
        return this.findPack(dc.a) ?? this.findPack(dc.b) ?? this.findPack(dc.c) ?? this.findPack(dc.d);
    }
  }

  subexpr(dc: Node): void {
    const simple = dc.k === K.Name || dc.k === K.Qual || dc.k === K.InitList || dc.k === K.FuncParam;
    if (!simple) this.append('(');
    this.comp(dc);
    if (!simple) this.append(')');
  }

  exprOp(op: Node): void {
    if (op.k === K.Operator) this.append(OPS[op.n]!.name);
    else this.comp(op);
  }

  literal(dc: Node): void {
    const type = dc.a!;
    const neg = dc.k === K.LiteralNeg;
    let lit = Lit.Default;
    if (type.k === K.Builtin) {
      lit = type.n as Lit;
      switch (lit) {
        case Lit.Int:
        case Lit.Unsigned:
        case Lit.Long:
        case Lit.UnsignedLong:
        case Lit.LongLong:
        case Lit.UnsignedLongLong:
          if (dc.b!.k === K.Name) {
            if (neg) this.append('-');
            this.comp(dc.b);
            this.append(INT_SUFFIX[lit - Lit.Int]!);
            return;
          }
          break;
        case Lit.Bool:
          if (dc.b!.k === K.Name && dc.b!.s.length === 1 && !neg) {
            if (dc.b!.s === '0') {
              this.append('false');
              return;
            }
            if (dc.b!.s === '1') {
              this.append('true');
              return;
            }
          }
          break;
        default:
          break;
      }
    }
    this.append('(');
    this.comp(type);
    this.append(')');
    if (neg) this.append('-');
    if (lit === Lit.Float) this.append('[');
    this.comp(dc.b);
    if (lit === Lit.Float) this.append(']');
  }

  unary(dc: Node): void {
    const op = dc.a!;
    let operand = dc.b!;
    let code = '';
    if (op.k === K.Operator) {
      code = OPS[op.n]!.code;
      // Taking the address of a member function: print the name, not the signature.
      if (code === 'ad' && operand.k === K.TypedName && operand.a!.k === K.Qual && operand.b!.k === K.FunctionType) {
        operand = operand.a!;
      }
      if (operand.k === K.Suffix) {
        this.subexpr(operand.a!);
        this.exprOp(op);
        return;
      }
    }
    if (code === 'sZ') {
      const pack = this.findPack(operand);
      this.append(String(pack ? pack.xs!.length : 0));
      return;
    }
    if (code === 'sP') {
      this.append(String(this.argsLength(operand)));
      return;
    }
    if (op.k !== K.Cast) this.exprOp(op);
    else {
      this.append('(');
      this.comp(op.a);
      this.append(')');
    }
    if (code === 'gs') this.comp(operand);
    else if (code === 'st') {
      this.append('(');
      this.comp(operand);
      this.append(')');
    } else this.subexpr(operand);
  }

  argsLength(dc: Node): number {
    let n = 0;
    for (const x of dc.xs ?? []) {
      if (x.k === K.PackExpansion) {
        const pack = this.findPack(x.a);
        n += pack ? pack.xs!.length : 0;
      } else n++;
    }
    return n;
  }

  binary(dc: Node): void {
    const op = dc.a!;
    const left = dc.b!;
    const right = dc.c!;
    const code = op.k === K.Operator ? OPS[op.n]!.code : '';
    if (code === 'dc' || code === 'sc' || code === 'cc' || code === 'rc') {
      this.exprOp(op);
      this.append('<');
      this.comp(left);
      this.append('>(');
      this.comp(right);
      this.append(')');
      return;
    }
    if (code.charCodeAt(0) === 102 /* f */) {
      this.fold(code, left, right, null);
      return;
    }
    if (code === 'di') {
      this.append('.');
      this.comp(left);
      this.designatedValue(right);
      return;
    }
    if (code === 'dx') {
      this.append('[');
      this.comp(left);
      this.append(']');
      this.designatedValue(right);
      return;
    }
    // Parenthesize `>` so it cannot be read as the end of a template argument list.
    const gt = code === 'gt';
    if (gt) this.append('(');
    if (code === 'cl' && left.k === K.TypedName) {
      // A call in an expression shows the callee's name, not its parameter types.
      if (left.b!.k !== K.FunctionType) fail();
      this.subexpr(left.a!);
    } else this.subexpr(left);
    if (code === 'ix') {
      this.append('[');
      this.comp(right);
      this.append(']');
    } else {
      if (code !== 'cl') this.exprOp(op);
      this.subexpr(right);
    }
    if (gt) this.append(')');
  }

  /** `= value` of a designated initializer; nested designators print without `=`. */
  designatedValue(v: Node): void {
    if (v.k === K.Binary && v.a!.k === K.Operator) {
      const code = OPS[v.a!.n]!.code;
      if (code === 'di' || code === 'dx') {
        this.comp(v);
        return;
      }
    }
    if (v.k === K.Trinary && v.a!.k === K.Operator && OPS[v.a!.n]!.code === 'dX') {
      this.comp(v);
      return;
    }
    this.append('=');
    this.subexpr(v);
  }

  fold(code: string, opNode: Node, op1: Node, op2: Node | null): void {
    const hold = this.packIndex;
    this.packIndex = -1; // print the whole pack
    switch (code.charAt(1)) {
      case 'l':
        this.append('(...');
        this.exprOp(opNode);
        this.subexpr(op1);
        this.append(')');
        break;
      case 'r':
        this.append('(');
        this.subexpr(op1);
        this.exprOp(opNode);
        this.append('...)');
        break;
      default:
        this.append('(');
        this.subexpr(op1);
        this.exprOp(opNode);
        this.append('...');
        this.exprOp(opNode);
        this.subexpr(op2!);
        this.append(')');
    }
    this.packIndex = hold;
  }

  trinary(dc: Node): void {
    const op = dc.a!;
    const code = op.k === K.Operator ? OPS[op.n]!.code : '';
    const first = dc.b!;
    const second = dc.c!;
    const third = dc.d;
    if (code.charCodeAt(0) === 102 /* f */) {
      this.fold(code, first, second, third);
      return;
    }
    if (code === 'dX') {
      this.append('[');
      this.comp(first);
      this.append(' ... ');
      this.comp(second);
      this.append(']');
      this.designatedValue(third!);
      return;
    }
    if (code === 'qu') {
      this.subexpr(first);
      this.exprOp(op);
      this.subexpr(second);
      this.append(' : ');
      this.subexpr(third!);
      return;
    }
    this.append('new ');
    if (first.xs!.length > 0) {
      this.subexpr(first);
      this.append(' ');
    }
    this.comp(second);
    if (third) this.subexpr(third);
  }
}

type Handler = (p: Printer, dc: Node) => void;

/**
 * Printing, one small function per node kind, dispatched through a table: a single switch over all
 * kinds gets deoptimized by V8 every time warm-up reaches a case for the first time.
 */
const PRINT: Handler[] = [];

PRINT[K.Name] = PRINT[K.SubStd] = function (p: Printer, dc: Node): void {
  p.append(dc.s);
};

PRINT[K.Tagged] = function (p: Printer, dc: Node): void {
  p.comp(dc.a);
  p.append('[abi:');
  p.comp(dc.b);
  p.append(']');
};

PRINT[K.Qual] = PRINT[K.Local] = function (p: Printer, dc: Node): void {
  p.comp(dc.a);
  p.append('::');
  let r = dc.b!;
  if (r.k === K.DefaultArg) {
    p.append(`{default arg#${r.n + 1}}::`);
    r = r.a!;
  }
  p.comp(r);
};

PRINT[K.TypedName] = function (p: Printer, dc: Node): void {
  p.typedName(dc);
};

PRINT[K.Template] = function (p: Printer, dc: Node): void {
  // A template name does not take part in the surrounding declarator.
  const hold = p.mods;
  const holdCurrent = p.currentTemplate;
  p.mods = null;
  p.currentTemplate = dc;
  p.comp(dc.a);
  if (p.last() === 60 /* < */) p.append(' ');
  p.append('<');
  p.comp(dc.b);
  if (p.last() === 62 /* > */) p.append(' ');
  p.append('>');
  p.mods = hold;
  p.currentTemplate = holdCurrent;
};

PRINT[K.TParam] = function (p: Printer, dc: Node): void {
  if (p.lambdaArg > 0) {
    // Generic lambda parameters are template parameters; c++filt shows them as auto:N.
    p.append(`auto:${dc.n + 1}`);
    return;
  }
  let a = p.lookupTParam(dc);
  if (a && a.k === K.TArgs) a = p.indexPack(a);
  if (!a) return fail();
  // The argument may itself mention an outer template's parameters.
  const hold = p.templates!;
  p.templates = hold.next;
  p.comp(a);
  p.templates = hold;
};

PRINT[K.Ctor] = function (p: Printer, dc: Node): void {
  p.comp(dc.a);
};

PRINT[K.Dtor] = function (p: Printer, dc: Node): void {
  p.append('~');
  p.comp(dc.a);
};

PRINT[K.Special] = function (p: Printer, dc: Node): void {
  p.append(dc.s);
  p.comp(dc.a);
};

PRINT[K.CtorVtable] = function (p: Printer, dc: Node): void {
  p.append('construction vtable for ');
  p.comp(dc.a);
  p.append('-in-');
  p.comp(dc.b);
};

PRINT[K.RefTemp] = function (p: Printer, dc: Node): void {
  p.append('reference temporary #');
  p.comp(dc.b);
  p.append(' for ');
  p.comp(dc.a);
};

PRINT[K.GlobalCD] = function (p: Printer, dc: Node): void {
  p.append(dc.s);
  p.comp(dc.a);
};

PRINT[K.Number] = function (p: Printer, dc: Node): void {
  p.append(String(dc.n));
};

PRINT[K.Clone] = function (p: Printer, dc: Node): void {
  p.comp(dc.a);
  p.append(' [clone ');
  p.append(dc.s);
  p.append(']');
};

PRINT[K.Restrict] = PRINT[K.Volatile] = PRINT[K.Const] = function (p: Printer, dc: Node): void {
  // A qualifier already pending in the same run of cv-qualifiers (e.g. `K T_` with T_ = `int
  // const`, or copied down by an array) is printed once.
  for (let m = p.mods; m; m = m.next) {
    if (!m.printed) {
      const k = m.node.k;
      if (k !== K.Restrict && k !== K.Volatile && k !== K.Const) break;
      if (k === dc.k) {
        p.comp(dc.a);
        return;
      }
    }
  }
  p.modifier(dc, dc.a!);
};

PRINT[K.Ref] = PRINT[K.RRef] = function (p: Printer, dc: Node): void {
  // Reference collapsing when the referenced type is a template parameter: & + && = &.
  let sub = dc.a!;
  let inner: Node | null = null;
  const holdTemplates = p.templates;
  if (p.lambdaArg === 0 && sub.k === K.TParam) {
    // c++filt pins the template context of such a `T_` the first time it is printed and
    // reuses it when the same node comes back through a substitution elsewhere.
    const saved = (p.savedScopes ??= new Map());
    if (!saved.has(sub)) saved.set(sub, p.templates);
    else if (!p.onStack(sub, dc)) p.templates = saved.get(sub)!;
    let a = p.lookupTParam(sub);
    if (a && a.k === K.TArgs) a = p.indexPack(a);
    if (!a) return fail();
    sub = a;
  }
  let node = dc;
  if (sub.k === K.Ref || sub.k === dc.k) node = sub;
  else if (sub.k === K.RRef) inner = sub.a;
  p.modifier(node, inner ?? node.a!);
  p.templates = holdTemplates;
};

const modifierOfA: Handler = function (p: Printer, dc: Node): void {
  p.modifier(dc, dc.a!);
};
for (const k of [
  K.Pointer,
  K.Complex,
  K.Imaginary,
  K.VendorQual,
  K.ConstThis,
  K.VolatileThis,
  K.RestrictThis,
  K.RefThis,
  K.RRefThis,
  K.TxSafe,
  K.Noexcept,
  K.Throw,
]) {
  PRINT[k] = modifierOfA;
}

PRINT[K.PtrMem] = PRINT[K.VectorType] = function (p: Printer, dc: Node): void {
  p.modifier(dc, dc.b!);
};

PRINT[K.FunctionType] = function (p: Printer, dc: Node): void {
  if (dc.a) {
    const m = p.pushMod(dc);
    p.comp(dc.a);
    p.mods = m.next;
    if (m.printed) return;
    p.append(' ');
  }
  p.functionType(dc, p.mods);
};

PRINT[K.ArrayType] = function (p: Printer, dc: Node): void {
  p.arrayTypeComp(dc);
};

PRINT[K.VendorType] = function (p: Printer, dc: Node): void {
  p.comp(dc.a);
};

PRINT[K.Decltype] = function (p: Printer, dc: Node): void {
  p.append('decltype (');
  p.comp(dc.a);
  p.append(')');
};

PRINT[K.PackExpansion] = function (p: Printer, dc: Node): void {
  const pack = p.findPack(dc.a);
  if (!pack) {
    // Only function parameter packs involved: print the pattern and "...".
    p.subexpr(dc.a!);
    p.append('...');
    return;
  }
  const len = pack.xs!.length;
  const hold = p.packIndex;
  for (let i = 0; i < len; i++) {
    p.packIndex = i;
    p.comp(dc.a);
    if (i < len - 1) p.append(', ');
  }
  p.packIndex = hold;
};

PRINT[K.Args] = PRINT[K.TArgs] = function (p: Printer, dc: Node): void {
  p.list(dc.xs!);
};

PRINT[K.Lambda] = function (p: Printer, dc: Node): void {
  p.append('{lambda(');
  p.lambdaArg++;
  p.comp(dc.b);
  p.lambdaArg--;
  p.append(`)#${dc.n + 1}}`);
};

PRINT[K.Unnamed] = function (p: Printer, dc: Node): void {
  p.append(`{unnamed type#${dc.n + 1}}`);
};

PRINT[K.StructBind] = function (p: Printer, dc: Node): void {
  p.append('[');
  const xs = dc.xs!;
  for (let i = 0; i < xs.length; i++) {
    if (i > 0) p.append(', ');
    p.comp(xs[i]!);
  }
  p.append(']');
};

PRINT[K.Operator] = function (p: Printer, dc: Node): void {
  const op = OPS[dc.n]!;
  p.append('operator');
  if (isLower(op.name.charCodeAt(0))) p.append(' ');
  p.append(op.name.endsWith(' ') ? op.name.slice(0, -1) : op.name);
};

PRINT[K.ExtOperator] = function (p: Printer, dc: Node): void {
  p.append('operator ');
  p.comp(dc.a);
};

PRINT[K.Conversion] = function (p: Printer, dc: Node): void {
  p.append('operator ');
  p.conversion(dc.a!);
};

PRINT[K.Cast] = function (p: Printer, dc: Node): void {
  p.comp(dc.a);
};

PRINT[K.FuncParam] = function (p: Printer, dc: Node): void {
  p.append(dc.n === 0 ? 'this' : `{parm#${dc.n}}`);
};

PRINT[K.Literal] = PRINT[K.LiteralNeg] = function (p: Printer, dc: Node): void {
  p.literal(dc);
};

PRINT[K.Nullary] = function (p: Printer, dc: Node): void {
  p.exprOp(dc.a!);
};

PRINT[K.Unary] = function (p: Printer, dc: Node): void {
  p.unary(dc);
};

PRINT[K.Binary] = function (p: Printer, dc: Node): void {
  p.binary(dc);
};

PRINT[K.Trinary] = function (p: Printer, dc: Node): void {
  p.trinary(dc);
};

PRINT[K.InitList] = function (p: Printer, dc: Node): void {
  if (dc.a) p.comp(dc.a);
  p.append('{');
  p.comp(dc.b);
  p.append('}');
};
