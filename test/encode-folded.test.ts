// SPDX-License-Identifier: Apache-2.0
// Folded stacks encoder: readable golden files (EBPFPROF_REGEN=1 rewrites them), the documented
// substitutions, and round trips through decode/folded.ts.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FOLDED_SUBSTITUTES, encodeFolded, foldedName, type FoldedOptions } from '../src/encode/folded';
import { decodeProfile } from '../src/decode/index';
import { decodeFolded } from '../src/decode/folded';
import type { Profile } from '../src/profile/model';
import { PERIOD_NS, RICH, basicProfile, canonicalRows, profileFixturesDir, richProfile } from './fixtures/profiles/sample-profiles';

const goldenDir = path.join(profileFixturesDir, 'golden');
const regen = process.env['EBPFPROF_REGEN'] === '1';

const cases: Array<{ file: string; profile: () => Profile; options: FoldedOptions }> = [
  { file: 'basic.folded', profile: () => basicProfile(), options: {} },
  { file: 'rich.folded', profile: richProfile, options: {} },
  { file: 'rich.pid-tid.cpu-ns.folded', profile: richProfile, options: { pidTid: true, weight: 'cpu-ns' } },
  { file: 'rich.annotated.folded', profile: richProfile, options: { annotateKinds: true } },
];

t.test('golden files', async (t) => {
  for (const c of cases) {
    const text = encodeFolded(c.profile(), c.options);
    const file = path.join(goldenDir, c.file);
    if (regen) {
      fs.mkdirSync(goldenDir, { recursive: true });
      fs.writeFileSync(file, text);
      t.pass(`regenerated ${c.file}`);
      continue;
    }
    t.ok(fs.existsSync(file), `${c.file} exists (run with EBPFPROF_REGEN=1 to create it)`);
    t.equal(text, fs.readFileSync(file, 'utf8'), `${c.file} matches (EBPFPROF_REGEN=1 to accept a deliberate change)`);
  }
});

t.test('format: process first, root first, one line per distinct stack, sorted', async (t) => {
  const text = encodeFolded(basicProfile());
  // The two threads of pid 100 share a stack: without pid/tid they are one line.
  t.equal(text, 'app;main;work;hot_a 75\nother;main;work;hot_b 25\n');
  const withTid = encodeFolded(basicProfile(), { pidTid: true });
  t.equal(withTid, 'app-100/100;main;work;hot_a 50\napp-100/101;main;work;hot_a 25\nother-200/200;main;work;hot_b 25\n');
  const cpu = encodeFolded(basicProfile(), { weight: 'cpu-ns' });
  t.equal(cpu, `app;main;work;hot_a ${75 * PERIOD_NS}\nother;main;work;hot_b ${25 * PERIOD_NS}\n`);
  t.equal(encodeFolded({ ...basicProfile(), samples: [] }), '', 'no samples, no lines');
});

t.test('characters the format cannot carry are substituted as documented', async (t) => {
  t.same(FOLDED_SUBSTITUTES, { ';': ':', '\n': ' ', '\r': ' ' });
  t.equal(foldedName('a;b\nc\rd'), 'a:b c d');
  t.equal(foldedName(''), '[unknown]');
  t.equal(foldedName('operator new(unsigned long)'), 'operator new(unsigned long)', 'spaces are kept');
  const text = encodeFolded(richProfile());
  t.match(text, /^node;main;weird:name with breaks 8$/m);
  t.match(text, /^app;main;work;ns::Widget::render\(int\);__GI___libc_write;entry_SYSCALL_64_after_hwframe;do_syscall_64;__x64_sys_write;ksys_write 15$/m, 'kernel frames under the syscall, root first');
  t.match(text, /^swapper\/0 5$/m, 'an empty stack is the process alone');
  for (const line of text.trimEnd().split('\n')) t.match(line, /^[^\n;]+(;[^\n;]+)* \d+$/, `well-formed: ${line}`);
  const annotated = encodeFolded(richProfile(), { annotateKinds: true });
  t.match(annotated, /;ksys_write_\[k\] 15$/m);
  t.match(annotated, /;LazyCompile:\*handler app\.js:10_\[j\] 12$/m);
});

/** The profile as folded text can express it: names substituted. */
function substituted(p: Profile): Profile {
  return { ...p, frames: p.frames.map((f) => ({ ...f, name: foldedName(f.name) })), samples: p.samples.map((s) => ({ ...s, processName: foldedName(s.processName) })) };
}

t.test('round trip through the decoder', async (t) => {
  for (const make of [() => basicProfile(), richProfile]) {
    const p = make();
    const plain = decodeProfile(Buffer.from(encodeFolded(p)), 'x.folded');
    t.same(canonicalRows(plain), canonicalRows(substituted(p), { pid: false, tid: false, thread: false, cpuNs: false }), 'counts per process and stack');

    const full = decodeFolded(Buffer.from(encodeFolded(p, { pidTid: true, weight: 'cpu-ns' })), 'x.folded', { weight: 'cpu-ns', periodNs: PERIOD_NS });
    t.same(canonicalRows(full), canonicalRows(substituted(p), { thread: false }), 'with pid/tid and cpu-ns: pid, tid, counts and cpu time come back');
    t.equal(full.meta.frequencyHz, 99);
  }
  const annotated = decodeProfile(Buffer.from(encodeFolded(richProfile(), { annotateKinds: true })));
  const kindOf = (name: string): string | undefined => annotated.frames.find((f) => f.name === name)?.kind;
  t.equal(kindOf('ksys_write'), 'kernel', '_[k] → kernel, suffix stripped');
  t.equal(kindOf('LazyCompile:*handler app.js:10'), 'jit', '_[j] → jit');
  t.equal(annotated.frames.find((f) => f.name === RICH.unsymbolized)?.symbolized, false, 'module+0xoff reads as unsymbolized');
  t.equal(annotated.frames.find((f) => f.name === 'main')?.symbolized, true);
});
