// SPDX-License-Identifier: Apache-2.0
/**
 * Itanium C++ ABI demangler (the scheme GCC and Clang use on Linux): entry point.
 *
 * The output is byte-identical to binutils' `c++filt` (libiberty's cp-demangle with DMGL_PARAMS |
 * DMGL_ANSI | DMGL_VERBOSE), because that is the spelling users compare our profiles with (perf,
 * gdb and objdump print the same). itanium-parse.ts reads the mangled name into a node graph,
 * itanium-print.ts prints it; both are bounded (recursion depth, output length, steps) so that
 * malformed or hostile input fails fast. Failure inside is a private sentinel exception that never
 * escapes demangleItanium(), which returns null instead.
 */
import { FAIL, ITANIUM_LIMITS, K, fail, mk, type Node } from './itanium-ast';
import { Parser } from './itanium-parse';
import { Printer } from './itanium-print';

export { ITANIUM_LIMITS };

/**
 * Demangles an Itanium C++ ABI symbol (`_Z...`, also `_GLOBAL__I_/D_` constructor-table names).
 * Returns null when `sym` is not such a symbol or is malformed; never throws.
 */
export function demangleItanium(sym: string): string | null {
  if (sym.length < 3 || sym.length > ITANIUM_LIMITS.maxInput) return null;
  try {
    let root: Node;
    let parser: Parser;
    if (sym.charCodeAt(0) === 95 && sym.charCodeAt(1) === 90) {
      parser = new Parser(sym);
      try {
        root = parser.mangledName(true);
        if (parser.p !== sym.length) fail();
      } catch (e) {
        // Retry an ambiguous `sr` with the old unresolved-name mangling.
        if (e !== FAIL || parser.unresolvedState !== -1) throw e;
        parser = new Parser(sym);
        parser.unresolvedState = 0;
        root = parser.mangledName(true);
      }
    } else if (
      sym.startsWith('_GLOBAL_') &&
      (sym.charAt(8) === '.' || sym.charAt(8) === '_' || sym.charAt(8) === '$') &&
      (sym.charAt(9) === 'I' || sym.charAt(9) === 'D') &&
      sym.charAt(10) === '_'
    ) {
      // Static constructor/destructor tables: "_GLOBAL__I_<name>".
      parser = new Parser(sym);
      parser.p = 11;
      let inner: Node;
      if (sym.startsWith('_Z', 11)) {
        parser.p = 13;
        inner = parser.encoding(false);
      } else {
        inner = mk(K.Name, null, null, sym.slice(11));
        parser.p = sym.length;
      }
      const what = sym.charAt(9) === 'I' ? 'global constructors keyed to ' : 'global destructors keyed to ';
      root = mk(K.GlobalCD, inner, null, what);
    } else {
      return null;
    }
    if (parser.p !== sym.length) return null;
    const printer = new Printer();
    printer.comp(root);
    return printer.out;
  } catch (e) {
    if (e === FAIL) return null;
    // A RangeError from an unexpectedly deep stack is also just "cannot demangle".
    return null;
  }
}
