// SPDX-License-Identifier: Apache-2.0
// Strict and enhanced mode: the one table and the one guard; every enhanced item refused in strict
// mode with the documented message through the CLI (doctor --intrusion), "not implemented yet" when
// enabled, refused as a switch of the profiling commands and of the agent's configuration, and
// listed in the README.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAgentConfigText } from '../src/agent/config';
import { ENHANCED_ITEMS, INTRUSION_ITEMS, IntrusionPolicy, notImplementedMessage, parseEnhancedItems, refusalMessage, requireIntrusion, type IntrusionItemId } from '../src/system/intrusion-policy';
import { cliPath, repoRoot } from './helpers/paths';

function ebpfprof(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [cliPath, ...args], { encoding: 'utf8', timeout: 60_000 });
}

t.test('the table: every enhanced item says what it does and that it is not implemented', async (t) => {
  t.same(ENHANCED_ITEMS, ['uprobes', 'ptrace', 'perf-map-injection', 'agent-injection', 'memory-write', 'file-write', 'signals', 'kubernetes-api']);
  for (const i of INTRUSION_ITEMS) {
    t.ok(i.effect.length > 10 && i.usedBy.length > 3, `${i.id}: effect and use`);
    if (i.classification === 'enhanced') t.equal(i.implemented, false, `${i.id}: no feature uses it yet`);
    else t.equal(i.implemented, true, `${i.id}: strict items are what ebpfprof does`);
  }
  const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  for (const i of INTRUSION_ITEMS) t.match(readme, new RegExp(`^\\| \`${i.id}\` \\| ${i.classification} \\|`, 'm'), `README lists ${i.id} as ${i.classification}`);
  t.match(readme, new RegExp(refusalMessage(INTRUSION_ITEMS.find((i) => i.id === 'uprobes')!).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'README quotes the refusal');
});

t.test('the guard: strict items pass, enhanced ones are refused, enabled ones are not implemented', async (t) => {
  const strict = IntrusionPolicy.strict();
  t.equal(strict.mode, 'strict');
  for (const i of INTRUSION_ITEMS) {
    if (i.classification === 'strict') {
      t.doesNotThrow(() => requireIntrusion(strict, i.id), `${i.id}: allowed in strict mode`);
      continue;
    }
    t.throws(() => requireIntrusion(strict, i.id), { code: 'ESTRICT', message: refusalMessage(i) }, `${i.id}: refused in strict mode`);
    t.match(refusalMessage(i), new RegExp(`\\(${i.id}\\) is refused in strict mode: .*Enable it with --enhanced ${i.id} \\(agent configuration: enhanced: \\[${i.id}\\]\\)$`), `${i.id}: the refusal names the item and the switch`);
    const enabled = new IntrusionPolicy([i.id as (typeof ENHANCED_ITEMS)[number]]);
    t.equal(enabled.mode, 'enhanced');
    t.throws(() => requireIntrusion(enabled, i.id), { code: 'ENOTIMPLEMENTED', message: notImplementedMessage(i) }, `${i.id}: enabled, not implemented yet`);
    t.doesNotThrow(() => requireIntrusion(strict, i.id as IntrusionItemId, { pid: process.pid }), `${i.id}: on ebpfprof's own process it is no intrusion`);
  }
  t.throws(() => parseEnhancedItems(['nope'], '--enhanced'), { code: 'EBADARG', message: /--enhanced: unknown item "nope" \(enhanced items: uprobes, ptrace, / });
  t.throws(() => parseEnhancedItems(['proc-read'], '--enhanced'), { code: 'EBADARG', message: /strict-mode item, always allowed/ });
  t.same(parseEnhancedItems(['uprobes,ptrace', 'uprobes'], '--enhanced'), ['uprobes', 'ptrace']);
  t.throws(() => parseEnhancedItems(['ptrace'], '--enhanced', { requireImplemented: true }), { code: 'EBADARG', message: /^--enhanced ptrace: attaching with ptrace \(ptrace\) is not implemented yet/ });
});

t.test('through the CLI: each enhanced item refused in strict mode with the documented message', async (t) => {
  for (const id of ENHANCED_ITEMS) {
    const item = INTRUSION_ITEMS.find((i) => i.id === id)!;
    const refused = ebpfprof(['doctor', '--intrusion', id]);
    t.equal(refused.status, 1, `${id}: exit 1`);
    t.equal(refused.stderr, `ebpfprof: ${refusalMessage(item)}\n`, `${id}: the documented refusal`);
    const enabled = ebpfprof(['doctor', '--intrusion', id, '--enhanced', id]);
    t.equal(enabled.status, 1);
    t.equal(enabled.stderr, `ebpfprof: ${notImplementedMessage(item)}\n`, `${id}: enabled, it says it is not implemented yet`);
  }
  const allowed = ebpfprof(['doctor', '--intrusion', 'proc-read']);
  t.equal(allowed.status, 0);
  t.match(allowed.stdout, /^proc-read: allowed in strict mode: none: /);
  t.equal(ebpfprof(['doctor', '--intrusion', 'nope']).status, 2, 'an unknown item is bad usage');
});

t.test('--enhanced on the commands, enhanced: in the agent configuration: not implemented yet, before anything loads', async (t) => {
  for (const args of [
    ['record', '-a', '-d', '1s', '--enhanced', 'uprobes'],
    ['offcpu', '-a', '-d', '1s', '--enhanced', 'ptrace'],
    ['sched', '-d', '1s', '--enhanced', 'signals'],
    ['tcp', '-d', '1s', '--enhanced', 'memory-write'],
    ['agent', '--enhanced', 'agent-injection'],
  ]) {
    const r = ebpfprof(args);
    t.equal(r.status, 2, `${args[0]}: exit 2`);
    t.match(r.stderr, new RegExp(`^ebpfprof: --enhanced ${args[args.length - 1]}: .* is not implemented yet: enhanced mode allows it, but no ebpfprof feature uses it`), `${args[0]}: says so clearly`);
    t.equal(r.stderr.split('\n').filter(Boolean).length, 1, `${args[0]}: one line`);
  }
  t.throws(() => parseAgentConfigText('enhanced: [uprobes]\n', 'agent.yaml'), { code: 'EBADARG', message: /^agent\.yaml: enhanced uprobes: uprobes on the target's code \(uprobes\) is not implemented yet/ });
  t.throws(() => parseAgentConfigText('enhanced: [bogus]\n', 'agent.yaml'), { code: 'EBADARG', message: /agent\.yaml: enhanced: unknown item "bogus"/ });
  t.same(parseAgentConfigText('enhanced: []\n', 'agent.yaml').enhanced, [], 'an empty list is strict mode');
});
