// SPDX-License-Identifier: Apache-2.0
/**
 * Parser of Itanium C++ ABI mangled names into the node graph of itanium-ast.ts. It follows the ABI
 * grammar, and where the grammar is ambiguous or c++filt is more lenient, it decides the way
 * c++filt (libiberty) does, since the printed result must match c++filt's.
 *
 * Substitutions (`S_`, `S0_`, ...) are references to earlier nodes, so the result is a DAG; `T_`
 * template parameters stay unresolved here and are looked up while printing, as c++filt does.
 */
import {
  BUILTIN_NODES,
  CH_0,
  CH_A,
  D_BUILTINS,
  FAIL,
  ITANIUM_LIMITS,
  K,
  Lit,
  OPS,
  OP_INDEX,
  STD_SUBS,
  fail,
  isDigit,
  isFnQual,
  isLower,
  isUpper,
  mk,
  mkList,
  type Node,
} from './itanium-ast';

export class Parser {
  readonly s: string;
  p = 0;
  readonly subs: Node[] = [];
  lastName: Node | null = null;
  depth = 0;
  /**
   * `sr` is ambiguous between the current unresolved-name mangling (`sr1AE1x`) and the old one
   * (`sr1A1x`). 1: try the current one; -1: it was used; 0: retry with the old one.
   */
  unresolvedState = 1;
  /** Inside `cv <type>` of a conversion operator name (not an expression cast). */
  isConversion = false;
  isExpression = false;

  constructor(s: string) {
    this.s = s;
  }

  peek(): string {
    return this.s.charAt(this.p);
  }
  peekAt(off: number): string {
    return this.s.charAt(this.p + off);
  }
  next(): string {
    return this.p < this.s.length ? this.s.charAt(this.p++) : '';
  }
  check(ch: string): boolean {
    if (this.s.charAt(this.p) === ch) {
      this.p++;
      return true;
    }
    return false;
  }
  expect(ch: string): void {
    if (!this.check(ch)) fail();
  }
  enter(): void {
    if (++this.depth > ITANIUM_LIMITS.maxParseDepth) fail();
  }
  leave(): void {
    this.depth--;
  }
  addSub(node: Node): void {
    this.subs.push(node);
  }

  /** `_Z <encoding> [.<clone-suffix>]*` at top level. */
  mangledName(topLevel: boolean): Node {
    if (!this.check('_') && topLevel) fail();
    this.expect('Z');
    let node = this.encoding(topLevel);
    if (topLevel) {
      while (this.peek() === '.') {
        const c = this.s.charCodeAt(this.p + 1);
        if (!(isLower(c) || isDigit(c) || c === 95)) break;
        node = this.cloneSuffix(node);
      }
    }
    return node;
  }

  cloneSuffix(enc: Node): Node {
    const s = this.s;
    const start = this.p;
    let e = start;
    let c = s.charCodeAt(e + 1);
    if (s.charCodeAt(e) === 46 && (isLower(c) || isDigit(c) || c === 95)) {
      e += 2;
      for (c = s.charCodeAt(e); isLower(c) || isDigit(c) || c === 95; c = s.charCodeAt(++e));
    }
    while (s.charCodeAt(e) === 46 && isDigit(s.charCodeAt(e + 1))) {
      e += 2;
      while (isDigit(s.charCodeAt(e))) e++;
    }
    this.p = e;
    return mk(K.Clone, enc, null, s.slice(start, e));
  }

  encoding(topLevel: boolean): Node {
    this.enter();
    const c = this.peek();
    if (c === 'G' || c === 'T') {
      const special = this.specialName(); // may nest encodings: thunks of thunks
      this.leave();
      return special;
    }
    let node = this.name(false);
    const p = this.peek();
    if (p !== '' && p !== 'E') {
      const ftype = this.bareFunctionType(hasReturnType(node));
      // Drop the return type of a nested local name so it is not mistaken for the outer one's.
      if (!topLevel && node.k === K.Local && ftype.k === K.FunctionType) ftype.a = null;
      node = mk(K.TypedName, node, ftype);
    }
    this.leave();
    return node;
  }

  specialName(): Node {
    if (this.check('T')) {
      switch (this.next()) {
        case 'V':
          return mk(K.Special, this.type(), null, 'vtable for ');
        case 'T':
          return mk(K.Special, this.type(), null, 'VTT for ');
        case 'I':
          return mk(K.Special, this.type(), null, 'typeinfo for ');
        case 'S':
          return mk(K.Special, this.type(), null, 'typeinfo name for ');
        case 'h':
          this.callOffset('h');
          return mk(K.Special, this.encoding(false), null, 'non-virtual thunk to ');
        case 'v':
          this.callOffset('v');
          return mk(K.Special, this.encoding(false), null, 'virtual thunk to ');
        case 'c':
          this.callOffset('');
          this.callOffset('');
          return mk(K.Special, this.encoding(false), null, 'covariant return thunk to ');
        case 'C': {
          const derived = this.type();
          if (this.number() < 0) fail();
          this.expect('_');
          const base = this.type();
          return mk(K.CtorVtable, base, derived);
        }
        case 'F':
          return mk(K.Special, this.type(), null, 'typeinfo fn for ');
        case 'J':
          return mk(K.Special, this.type(), null, 'java Class for ');
        case 'H':
          return mk(K.Special, this.name(false), null, 'TLS init function for ');
        case 'W':
          return mk(K.Special, this.name(false), null, 'TLS wrapper function for ');
        case 'A':
          return mk(K.Special, this.templateArg(), null, 'template parameter object for ');
        default:
          return fail();
      }
    }
    if (this.check('G')) {
      switch (this.next()) {
        case 'V':
          return mk(K.Special, this.name(false), null, 'guard variable for ');
        case 'R': {
          const name = this.name(false);
          return mk(K.RefTemp, name, mk(K.Number, null, null, '', this.number()));
        }
        case 'A':
          return mk(K.Special, this.encoding(false), null, 'hidden alias for ');
        case 'r':
          return this.javaResource();
        case 'T':
          if (this.next() === 'n') return mk(K.Special, this.encoding(false), null, 'non-transaction clone for ');
          return mk(K.Special, this.encoding(false), null, 'transaction clone for ');
        default:
          return fail();
      }
    }
    return fail();
  }

  /** `Gr <length> _ <name with $S $_ $$ escapes>` (gcj). */
  javaResource(): Node {
    let len = this.number();
    if (len <= 1 || this.next() !== '_') fail();
    len--;
    let out = '';
    while (len > 0) {
      const c = this.next();
      if (c === '') fail();
      if (c === '$') {
        const e = this.next();
        if (e === 'S') out += '/';
        else if (e === '_') out += '.';
        else if (e === '$') out += '$';
        else fail();
        len -= 2;
      } else {
        out += c;
        len--;
      }
    }
    return mk(K.Special, mk(K.Name, null, null, out), null, 'java resource ');
  }

  callOffset(c: string): void {
    if (c === '') c = this.next();
    if (c === 'h') this.number();
    else if (c === 'v') {
      this.number();
      this.expect('_');
      this.number();
    } else fail();
    this.expect('_');
  }

  /** `[n] <digits>`; no digits reads as 0 and overflow as -1, as the reference does. */
  number(): number {
    let neg = false;
    if (this.peek() === 'n') {
      neg = true;
      this.p++;
    }
    let v = 0;
    const s = this.s;
    for (let c = s.charCodeAt(this.p); isDigit(c); c = s.charCodeAt(++this.p)) {
      if (v > (0x7fffffff - (c - CH_0)) / 10) return -1;
      v = v * 10 + (c - CH_0);
    }
    return neg ? -v : v;
  }

  /** `_` is 0, `<n>_` is n + 1; -1 when malformed. */
  compactNumber(): number {
    let n: number;
    const c = this.peek();
    if (c === '_') n = 0;
    else if (c === 'n') return -1;
    else n = this.number() + 1;
    if (n < 0 || !this.check('_')) return -1;
    return n;
  }

  name(substable: boolean): Node {
    const c = this.peek();
    let dc: Node | null = null;
    let subst = false;
    switch (c) {
      case 'N':
        dc = this.nestedName();
        break;
      case 'Z':
        dc = this.localName();
        break;
      case 'U':
        dc = this.unqualifiedName(null);
        break;
      default: {
        if (c === 'S') {
          if (this.peekAt(1) === 't') {
            this.p += 2;
            dc = mk(K.Name, null, null, 'std');
          }
          if (this.peek() === 'S') {
            if (dc) fail();
            dc = this.substitution();
            subst = true;
          }
        }
        if (!subst) dc = this.unqualifiedName(dc);
        if (this.peek() === 'I') {
          // <unscoped-template-name> is a substitution candidate.
          if (!subst) this.addSub(dc as Node);
          dc = mk(K.Template, dc, this.templateArgs());
          subst = false;
        }
      }
    }
    if (dc === null) return fail();
    if (substable && !subst) this.addSub(dc);
    return dc;
  }

  nestedName(): Node {
    this.expect('N');
    const quals = this.cvQualifiers(true);
    const rqual = this.refQualifier();
    let node = this.prefix();
    node = wrapQuals(quals, node);
    if (rqual) {
      rqual.a = node;
      node = rqual;
    }
    this.expect('E');
    return node;
  }

  prefix(substable = true): Node {
    let ret: Node | null = null;
    for (;;) {
      const c = this.peek();
      if (c === 'D' && (this.peekAt(1) === 'T' || this.peekAt(1) === 't')) {
        if (ret) fail();
        ret = this.type();
      } else if (c === 'I') {
        if (ret === null) fail();
        ret = mk(K.Template, ret, this.templateArgs());
      } else if (c === 'T') {
        if (ret) fail();
        ret = this.templateParam();
      } else if (c === 'M') {
        // Initializer scope of a lambda; the entity was already a substitution candidate.
        this.p++;
        continue;
      } else if (c === 'S') {
        if (ret) fail();
        ret = this.substitution();
        continue;
      } else {
        ret = this.unqualifiedName(ret);
      }
      if (this.peek() === 'E') break;
      if (substable) this.addSub(ret);
    }
    return ret;
  }

  unqualifiedName(scope: Node | null): Node {
    const c = this.s.charCodeAt(this.p);
    let ret: Node;
    if (isDigit(c)) {
      ret = this.sourceName();
    } else if (isLower(c)) {
      const wasExpr = this.isExpression;
      if (c === 111 /* o */ && this.peekAt(1) === 'n') {
        this.p += 2;
        this.isExpression = false; // `on cv` names a conversion operator
      }
      ret = this.operatorName();
      this.isExpression = wasExpr;
      if (ret.k === K.Operator && OPS[ret.n]!.code === 'li') ret = mk(K.Unary, ret, this.sourceName());
    } else if (c === 68 /* D */ && this.peekAt(1) === 'C') {
      this.p += 2;
      const names: Node[] = [];
      do {
        names.push(this.sourceName());
      } while (this.peek() !== 'E' && this.p < this.s.length);
      this.expect('E');
      ret = mk(K.StructBind);
      ret.xs = names;
    } else if (c === 67 /* C */ || c === 68 /* D */) {
      ret = this.ctorDtorName();
    } else if (c === 76 /* L */) {
      this.p++;
      ret = this.sourceName();
      this.discriminator();
    } else if (c === 85 /* U */) {
      const n = this.peekAt(1);
      if (n === 'l') ret = this.lambda();
      else if (n === 't') ret = this.unnamedType();
      else return fail();
    } else {
      return fail();
    }
    if (this.peek() === 'B') ret = this.abiTags(ret);
    if (scope) ret = mk(K.Qual, scope, ret);
    return ret;
  }

  sourceName(): Node {
    const len = this.number();
    if (len <= 0) fail();
    const start = this.p;
    if (len > this.s.length - start) fail();
    this.p += len;
    let id = this.s.slice(start, start + len);
    // GCC names anonymous namespaces `_GLOBAL__N_<file>`; c++filt shows them as below.
    if (len >= 10 && id.startsWith('_GLOBAL_')) {
      const sep = id.charAt(8);
      if ((sep === '.' || sep === '_' || sep === '$') && id.charAt(9) === 'N') id = '(anonymous namespace)';
    }
    const node = mk(K.Name, null, null, id);
    this.lastName = node;
    return node;
  }

  abiTags(node: Node): Node {
    const hold = this.lastName;
    while (this.check('B')) node = mk(K.Tagged, node, this.sourceName());
    this.lastName = hold;
    return node;
  }

  discriminator(): void {
    if (this.peek() !== '_') return;
    this.p++;
    let underscores = 1;
    if (this.peek() === '_') {
      underscores++;
      this.p++;
    }
    const n = this.number();
    if (n < 0) fail();
    if (underscores > 1 && n >= 10) this.expect('_');
  }

  ctorDtorName(): Node {
    const last = this.lastName;
    if (this.peek() === 'C') {
      let inheriting = false;
      if (this.peekAt(1) === 'I') {
        inheriting = true;
        this.p++;
      }
      const kind = this.peekAt(1);
      if (kind < '1' || kind > '5') fail();
      this.p += 2;
      if (inheriting) this.type();
      // An inheriting constructor is named after the last name seen, i.e. the base class.
      if (!this.lastName) fail();
      return mk(K.Ctor, this.lastName);
    }
    const kind = this.peekAt(1);
    if (!(kind === '0' || kind === '1' || kind === '2' || kind === '4' || kind === '5')) fail();
    this.p += 2;
    if (!last) fail();
    return mk(K.Dtor, last);
  }

  lambda(): Node {
    this.p += 2; // Ul
    const params = this.parmList();
    this.expect('E');
    const n = this.compactNumber();
    if (n < 0) fail();
    return mk(K.Lambda, null, params, '', n);
  }

  unnamedType(): Node {
    this.p += 2; // Ut
    const n = this.compactNumber();
    if (n < 0) fail();
    const node = mk(K.Unnamed, null, null, '', n);
    this.addSub(node);
    return node;
  }

  operatorName(): Node {
    const c1 = this.next();
    const c2 = this.next();
    if (c1 === 'v' && c2 >= '0' && c2 <= '9') {
      return mk(K.ExtOperator, this.sourceName(), null, '', c2.charCodeAt(0) - CH_0);
    }
    if (c1 === 'c' && c2 === 'v') {
      const wasConversion = this.isConversion;
      this.isConversion = !this.isExpression;
      const type = this.type();
      const node = mk(this.isConversion ? K.Conversion : K.Cast, type);
      this.isConversion = wasConversion;
      return node;
    }
    const idx = OP_INDEX.get(c1 + c2);
    if (idx === undefined) return fail();
    return mk(K.Operator, null, null, '', idx);
  }

  localName(): Node {
    this.expect('Z');
    const fn = this.encoding(false);
    this.expect('E');
    let entity: Node;
    if (this.check('s')) {
      this.discriminator();
      entity = mk(K.Name, null, null, 'string literal');
    } else {
      let num = -1;
      if (this.check('d')) {
        num = this.compactNumber();
        if (num < 0) fail();
      }
      entity = this.name(false);
      // Lambdas and unnamed types carry their own discriminator.
      if (entity.k !== K.Lambda && entity.k !== K.Unnamed) this.discriminator();
      if (num >= 0) entity = mk(K.DefaultArg, entity, null, '', num);
    }
    // The containing function's return type is not shown for local entities.
    if (fn.k === K.TypedName && fn.b!.k === K.FunctionType) fn.b!.a = null;
    return mk(K.Local, fn, entity);
  }

  /** r V K Dx Do DO Dw prefixes; returns them outermost first. */
  cvQualifiers(memberFn: boolean): Node[] | null {
    let quals: Node[] | null = null;
    for (;;) {
      const c = this.peek();
      let q: Node;
      if (c === 'r') q = mk(memberFn ? K.RestrictThis : K.Restrict);
      else if (c === 'V') q = mk(memberFn ? K.VolatileThis : K.Volatile);
      else if (c === 'K') q = mk(memberFn ? K.ConstThis : K.Const);
      else if (c === 'D') {
        const c2 = this.peekAt(1);
        if (c2 === 'x') q = mk(K.TxSafe);
        else if (c2 === 'o') q = mk(K.Noexcept);
        else if (c2 === 'O') {
          this.p += 2;
          q = mk(K.Noexcept, null, this.expression());
          this.expect('E');
          (quals ??= []).push(q);
          continue;
        } else if (c2 === 'w') {
          this.p += 2;
          q = mk(K.Throw, null, this.parmList());
          this.expect('E');
          (quals ??= []).push(q);
          continue;
        } else break;
        this.p++;
      } else break;
      this.p++;
      (quals ??= []).push(q);
    }
    // Qualifiers in front of a function type apply to `this`.
    if (quals && !memberFn && this.peek() === 'F') {
      for (const q of quals) {
        if (q.k === K.Restrict) q.k = K.RestrictThis;
        else if (q.k === K.Volatile) q.k = K.VolatileThis;
        else if (q.k === K.Const) q.k = K.ConstThis;
      }
    }
    return quals;
  }

  refQualifier(): Node | null {
    const c = this.peek();
    if (c === 'R') {
      this.p++;
      return mk(K.RefThis);
    }
    if (c === 'O') {
      this.p++;
      return mk(K.RRefThis);
    }
    return null;
  }

  type(): Node {
    this.enter();
    const t = this.type1();
    this.leave();
    return t;
  }

  private type1(): Node {
    const c = this.peek();
    if (c === 'r' || c === 'V' || c === 'K' || (c === 'D' && 'xoOw'.includes(this.peekAt(1)) && this.peekAt(1) !== '')) {
      const quals = this.cvQualifiers(false)!;
      let inner: Node;
      let ret: Node;
      if (this.peek() === 'F') {
        inner = this.functionType();
      } else {
        inner = this.type();
      }
      if (inner.k === K.RefThis || inner.k === K.RRefThis) {
        // Keep the ref-qualifier outside the cv-qualifiers so it prints after them.
        const fn = inner.a!;
        ret = wrapQuals(quals, fn);
        inner.a = ret;
        ret = inner;
      } else {
        ret = wrapQuals(quals, inner);
      }
      this.addSub(ret);
      return ret;
    }
    let ret: Node;
    let canSubst = true;
    switch (c) {
      case 'a': case 'b': case 'c': case 'd': case 'e': case 'f': case 'g': case 'h': case 'i': case 'j':
      case 'l': case 'm': case 'n': case 'o': case 's': case 't': case 'v': case 'w': case 'x': case 'y':
      case 'z':
        this.p++;
        return BUILTIN_NODES[c]!;
      case 'u':
        this.p++;
        ret = mk(K.VendorType, this.sourceName());
        break;
      case 'F':
        ret = this.functionType();
        break;
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
      case 'N': case 'Z':
        ret = this.name(false);
        break;
      case 'A':
        ret = this.arrayType();
        break;
      case 'M':
        ret = this.ptrMemType();
        break;
      case 'T': {
        ret = this.templateParam();
        if (this.peek() === 'I') {
          // <template-template-param> <template-args>; inside a conversion operator's type the
          // args may instead belong to the enclosing template, which only a second `I` tells.
          if (!this.isConversion) {
            this.addSub(ret);
            ret = mk(K.Template, ret, this.templateArgs());
          } else {
            const saveP = this.p;
            const saveSubs = this.subs.length;
            const saveDepth = this.depth;
            const saveExpr = this.isExpression;
            let args: Node | null = null;
            try {
              args = this.templateArgs();
            } catch (e) {
              // A failed tentative read only means these args belong to the enclosing template
              // (they may use substitutions that exist only on the second reading).
              if (e !== FAIL) throw e;
              this.depth = saveDepth;
              this.isExpression = saveExpr;
              this.isConversion = true;
            }
            if (args && this.peek() === 'I') {
              this.addSub(ret);
              ret = mk(K.Template, ret, args);
            } else {
              this.p = saveP;
              this.subs.length = saveSubs;
            }
          }
        }
        break;
      }
      case 'S': {
        const n = this.s.charCodeAt(this.p + 1);
        if (isDigit(n) || n === 95 || isUpper(n)) {
          ret = this.substitution();
          if (this.peek() === 'I') ret = mk(K.Template, ret, this.templateArgs());
          else canSubst = false;
        } else {
          ret = this.name(false);
          if (ret.k === K.SubStd) canSubst = false;
        }
        break;
      }
      case 'O':
        this.p++;
        ret = mk(K.RRef, this.type());
        break;
      case 'P':
        this.p++;
        ret = mk(K.Pointer, this.type());
        break;
      case 'R':
        this.p++;
        ret = mk(K.Ref, this.type());
        break;
      case 'C':
        this.p++;
        ret = mk(K.Complex, this.type());
        break;
      case 'G':
        this.p++;
        ret = mk(K.Imaginary, this.type());
        break;
      case 'U': {
        this.p++;
        let q = this.sourceName();
        if (this.peek() === 'I') q = mk(K.Template, q, this.templateArgs());
        ret = mk(K.VendorQual, this.type(), q);
        break;
      }
      case 'D': {
        canSubst = false;
        this.p++;
        const d = this.next();
        switch (d) {
          case 'T':
          case 't':
            ret = mk(K.Decltype, this.expression());
            this.expect('E');
            canSubst = true;
            break;
          case 'p':
            ret = mk(K.PackExpansion, this.type());
            canSubst = true;
            break;
          case 'a':
            ret = mk(K.Name, null, null, 'auto');
            break;
          case 'c':
            ret = mk(K.Name, null, null, 'decltype(auto)');
            break;
          case 'F':
            ret = this.floatNType();
            break;
          case 'v':
            ret = this.vectorType();
            canSubst = true;
            break;
          default: {
            const b = D_BUILTINS[d];
            if (!b) return fail();
            ret = mk(K.Builtin, null, null, b.name, b.lit);
          }
        }
        break;
      }
      default:
        // c++filt reads anything else as a class name, so e.g. `pt` here is a type "operator->".
        ret = this.name(false);
    }
    if (canSubst) this.addSub(ret);
    return ret;
  }

  /** `DF <bits> _` (_FloatN), `DF <bits> x` (_FloatNx), `DF16b` (std::bfloat16_t). */
  private floatNType(): Node {
    if (this.s.startsWith('16b', this.p)) {
      this.p += 3;
      return mk(K.Builtin, null, null, 'std::bfloat16_t', Lit.Float);
    }
    const bits = this.number();
    if (bits <= 0 || bits > 512) fail();
    const c = this.next();
    if (c === '_') return mk(K.Builtin, null, null, `_Float${bits}`, Lit.Float);
    if (c === 'x') return mk(K.Builtin, null, null, `_Float${bits}x`, Lit.Float);
    return fail();
  }

  functionType(): Node {
    this.enter();
    this.expect('F');
    this.check('Y'); // extern "C": not printed
    let ret = this.bareFunctionType(true);
    const rq = this.refQualifier();
    if (rq) {
      rq.a = ret;
      ret = rq;
    }
    this.expect('E');
    this.leave();
    return ret;
  }

  bareFunctionType(hasReturn: boolean): Node {
    if (this.check('J')) hasReturn = true;
    const ret = hasReturn ? this.type() : null;
    return mk(K.FunctionType, ret, this.parmList());
  }

  parmList(): Node {
    const xs: Node[] = [];
    for (;;) {
      const c = this.peek();
      if (c === '' || c === 'E' || c === '.') break;
      if ((c === 'R' || c === 'O') && this.peekAt(1) === 'E') break; // ref-qualifier
      xs.push(this.type());
    }
    if (xs.length === 0) fail();
    // A lone `void` means no parameters.
    if (xs.length === 1 && xs[0]!.k === K.Builtin && xs[0]!.n === Lit.Void) xs.length = 0;
    return mkList(K.Args, xs);
  }

  arrayType(): Node {
    this.expect('A');
    let dim: Node | null = null;
    const c = this.s.charCodeAt(this.p);
    if (c === 95) {
      // no dimension
    } else if (isDigit(c)) {
      const start = this.p;
      while (isDigit(this.s.charCodeAt(this.p))) this.p++;
      dim = mk(K.Name, null, null, this.s.slice(start, this.p));
    } else {
      dim = this.expression();
    }
    this.expect('_');
    return mk(K.ArrayType, dim, this.type());
  }

  vectorType(): Node {
    let dim: Node;
    if (this.check('_')) dim = this.expression();
    else dim = mk(K.Number, null, null, '', this.number());
    this.expect('_');
    return mk(K.VectorType, dim, this.type());
  }

  ptrMemType(): Node {
    this.expect('M');
    const cls = this.type();
    const mem = this.type();
    return mk(K.PtrMem, cls, mem);
  }

  templateParam(): Node {
    this.expect('T');
    const n = this.compactNumber();
    if (n < 0) fail();
    return mk(K.TParam, null, null, '', n);
  }

  substitution(): Node {
    this.expect('S');
    const c = this.next();
    const cc = c.charCodeAt(0);
    if (c === '_' || isDigit(cc) || isUpper(cc)) {
      let id = 0;
      if (c !== '_') {
        let ch = cc;
        for (;;) {
          if (isDigit(ch)) id = id * 36 + ch - CH_0;
          else if (isUpper(ch)) id = id * 36 + ch - CH_A + 10;
          else fail();
          if (id > 0x7fffffff) fail();
          const nx = this.next();
          if (nx === '_') break;
          ch = nx.charCodeAt(0);
        }
        id++;
      }
      if (id >= this.subs.length) fail();
      return this.subs[id]!;
    }
    const sub = STD_SUBS[c];
    if (!sub) return fail();
    // c++filt runs verbose, so an abbreviation is always printed in full (Ss is
    // std::basic_string<char, ...>, never std::string), wherever it appears.
    if (sub[1] !== '') this.lastName = mk(K.SubStd, null, null, sub[1]);
    let node = mk(K.SubStd, null, null, sub[0]);
    if (this.peek() === 'B') {
      // ABI tags on an abbreviation make it a substitution candidate.
      node = this.abiTags(node);
      this.addSub(node);
    }
    return node;
  }

  templateArgs(): Node {
    const hold = this.lastName;
    const c = this.next();
    if (c !== 'I' && c !== 'J') fail();
    this.enter();
    const xs: Node[] = [];
    if (!this.check('E')) {
      do {
        xs.push(this.templateArg());
      } while (!this.check('E'));
    }
    this.leave();
    this.lastName = hold;
    return mkList(K.TArgs, xs);
  }

  templateArg(): Node {
    switch (this.peek()) {
      case 'X': {
        this.p++;
        const e = this.expression();
        this.expect('E');
        return e;
      }
      case 'L':
        return this.exprPrimary();
      case 'I':
      case 'J':
        return this.templateArgs();
      default:
        return this.type();
    }
  }

  exprPrimary(): Node {
    this.expect('L');
    let ret: Node;
    const c = this.peek();
    if (c === '_' || c === 'Z') {
      ret = this.mangledName(false);
    } else {
      const type = this.type();
      if (type.k === K.Builtin && type.s === 'decltype(nullptr)' && this.check('E')) return type;
      let k = K.Literal;
      if (this.check('n')) k = K.LiteralNeg;
      const start = this.p;
      const end = this.s.indexOf('E', start);
      if (end <= start) fail(); // a literal needs a value
      this.p = end;
      ret = mk(k, type, mk(K.Name, null, null, this.s.slice(start, end)));
    }
    this.expect('E');
    return ret;
  }

  expression(): Node {
    const was = this.isExpression;
    this.isExpression = true;
    const e = this.expr();
    this.isExpression = was;
    return e;
  }

  exprList(term: string): Node {
    const xs: Node[] = [];
    while (!this.check(term)) {
      if (this.p >= this.s.length) fail();
      xs.push(this.expr());
    }
    return mkList(K.Args, xs);
  }

  expr(): Node {
    this.enter();
    const e = this.expr1();
    this.leave();
    return e;
  }

  private expr1(): Node {
    const c = this.peek();
    const c2 = this.peekAt(1);
    if (c === 'L') return this.exprPrimary();
    if (c === 'T') return this.templateParam();
    if (c === 's' && c2 === 'r') return this.unresolvedName();
    if (c === 's' && c2 === 'p') {
      this.p += 2;
      return mk(K.PackExpansion, this.expr());
    }
    if (c === 'f' && c2 === 'p') {
      this.p += 2;
      if (this.check('T')) return mk(K.FuncParam, null, null, '', 0);
      const n = this.compactNumber();
      if (n < 0) fail();
      return mk(K.FuncParam, null, null, '', n + 1);
    }
    if (isDigit(c.charCodeAt(0)) || (c === 'o' && c2 === 'n')) {
      if (c === 'o') this.p += 2;
      const name = this.unqualifiedName(null);
      if (this.peek() === 'I') return mk(K.Template, name, this.templateArgs());
      return name;
    }
    if ((c === 'i' || c === 't') && c2 === 'l') {
      this.p += 2;
      const type = c === 't' ? this.type() : null;
      if (this.p + 1 >= this.s.length) fail();
      return mk(K.InitList, type, this.exprList('E'));
    }
    const op = this.operatorName();
    let code = '';
    let arity: number;
    if (op.k === K.Operator) {
      const info = OPS[op.n]!;
      code = info.code;
      if (code === 'st') return mk(K.Unary, op, this.type());
      arity = info.arity;
    } else if (op.k === K.ExtOperator) {
      arity = op.n;
    } else if (op.k === K.Cast) {
      arity = 1;
    } else {
      return fail();
    }
    switch (arity) {
      case 0:
        return mk(K.Nullary, op);
      case 1: {
        let suffix = false;
        if ((code === 'pp' || code === 'mm') && !this.check('_')) suffix = true;
        let operand: Node;
        if (op.k === K.Cast && this.check('_')) operand = this.exprList('E');
        else if (code === 'sP') operand = this.templateArgsBody();
        else operand = this.expr();
        return mk(K.Unary, op, suffix ? mk(K.Suffix, operand) : operand);
      }
      case 2: {
        if (code === '') return fail();
        let left: Node;
        if (code === 'dc' || code === 'sc' || code === 'cc' || code === 'rc') left = this.type();
        else if (code.charCodeAt(0) === 102 /* f */) left = this.operatorName();
        else if (code === 'di') left = this.unqualifiedName(null);
        else left = this.expr();
        let right: Node;
        if (code === 'cl') right = this.exprList('E');
        else if (code === 'dt' || code === 'pt') {
          const p0 = this.peek();
          const p1 = this.peekAt(1);
          if ((p0 === 'g' && p1 === 's') || (p0 === 's' && p1 === 'r')) right = this.expr();
          else {
            right = this.unqualifiedName(null);
            if (this.peek() === 'I') right = mk(K.Template, right, this.templateArgs());
          }
        } else right = this.expr();
        const node = mk(K.Binary, op, left);
        node.c = right;
        return node;
      }
      case 3: {
        let first: Node;
        let second: Node;
        let third: Node | null;
        if (code === 'qu' || code === 'dX') {
          first = this.expr();
          second = this.expr();
          third = this.expr();
        } else if (code.charCodeAt(0) === 102 /* f */) {
          first = this.operatorName();
          second = this.expr();
          third = this.expr();
        } else if (code === 'nw' || code === 'na') {
          first = this.exprList('_');
          second = this.type();
          if (this.check('E')) third = null;
          else if (this.peek() === 'p' && this.peekAt(1) === 'i') {
            this.p += 2;
            third = this.exprList('E');
          } else if (this.peek() === 'i' && this.peekAt(1) === 'l') third = this.expr();
          else return fail();
        } else {
          return fail();
        }
        const node = mk(K.Trinary, op, first);
        node.c = second;
        node.d = third;
        return node;
      }
      default:
        return fail();
    }
  }

  /** `sr <qualifier-levels> E <name>` (current) or `sr <type> <name>` (old). */
  private unresolvedName(): Node {
    this.p += 2;
    const c = this.s.charCodeAt(this.p);
    let type: Node;
    if (this.unresolvedState !== 0 && (isDigit(c) || isLower(c) || c === 67 || c === 85 || c === 76)) {
      this.unresolvedState = -1;
      type = this.prefix(false);
      this.check('E');
    } else {
      type = this.type();
    }
    let name = this.unqualifiedName(type);
    if (this.peek() === 'I') name = mk(K.Template, name, this.templateArgs());
    return name;
  }

  /** Template arguments up to `E` without the leading `I` (for sizeof...(args)). */
  private templateArgsBody(): Node {
    const hold = this.lastName;
    const xs: Node[] = [];
    while (!this.check('E')) {
      if (this.p >= this.s.length) fail();
      xs.push(this.templateArg());
    }
    this.lastName = hold;
    return mkList(K.TArgs, xs);
  }
}

/** Wraps `inner` in qualifiers listed outermost first. */
function wrapQuals(quals: Node[] | null, inner: Node): Node {
  if (!quals) return inner;
  let node = inner;
  for (let i = quals.length - 1; i >= 0; i--) {
    const q = quals[i]!;
    q.a = node;
    node = q;
  }
  return node;
}

function isCtorDtorConv(dc: Node | null): boolean {
  while (dc) {
    switch (dc.k) {
      case K.Qual:
      case K.Local:
        dc = dc.b;
        continue;
      case K.Ctor:
      case K.Dtor:
      case K.Conversion:
        return true;
      default:
        return false;
    }
  }
  return false;
}

/** Templates other than constructors, destructors and conversions encode their return type. */
export function hasReturnType(dc: Node | null): boolean {
  while (dc) {
    if (dc.k === K.Local) dc = dc.b;
    else if (dc.k === K.Template) return !isCtorDtorConv(dc.a);
    else if (isFnQual(dc.k)) dc = dc.a;
    else return false;
  }
  return false;
}
