// SPDX-License-Identifier: Apache-2.0
// Capability parsing: real /proc/PID/status files captured on the test VM (see
// test/fixtures/proc-status/README.md), our own process, capsh as an independent decoder of the
// bit names, malformed input and a seeded fuzz.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EbpfprofError } from '../src/errors';
import {
  CAPABILITY_NAMES,
  CAP_BPF,
  CAP_PERFMON,
  CAP_SYS_ADMIN,
  CAP_SYS_RESOURCE,
  capabilityBit,
  capabilityName,
  capabilityNames,
  capabilitySet,
  hasCapability,
  parseCapabilities,
  readCapabilities,
} from '../src/system/capabilities';
import { fixturesDir } from './helpers/paths';
import { requireKernelFeature } from './helpers/kernel-feature';
import { intPrng } from './helpers/prng';

const statusDir = path.join(fixturesDir, 'proc-status');
const fixture = (name: string): Buffer => fs.readFileSync(path.join(statusDir, name));

t.test('capability bit numbers match include/uapi/linux/capability.h', async (t) => {
  t.equal(CAP_PERFMON, 38);
  t.equal(CAP_BPF, 39);
  t.equal(CAP_SYS_ADMIN, 21);
  t.equal(CAPABILITY_NAMES[CAP_BPF], 'CAP_BPF');
  t.equal(CAPABILITY_NAMES[CAP_PERFMON], 'CAP_PERFMON');
  t.equal(capabilityBit('CAP_BPF'), 39);
  t.equal(capabilityBit('perfmon'), 38, 'prefix and case are optional');
  t.equal(capabilityBit('cap_syslog'), 34);
  t.equal(capabilityName(63), 'CAP_63', 'bits newer than the table keep a readable name');
  t.throws(() => capabilityBit('CAP_MAGIC'), { code: 'EBADARG' });
  t.throws(() => capabilityBit(64), { code: 'EBADARG' });
  t.equal(capabilitySet(['CAP_BPF', 'CAP_PERFMON']), 0xc000000000n);
});

t.test('the name table agrees with capsh --decode, bit by bit', async (t) => {
  let capsh: string;
  try {
    capsh = execFileSync('capsh', [`--decode=${((1n << BigInt(CAPABILITY_NAMES.length)) - 1n).toString(16)}`], { encoding: 'utf8' });
  } catch {
    // capsh (libcap2-bin) is a test tool like bpftool; its absence is not a kernel feature.
    t.fail('capsh is not installed (apt-get install libcap2-bin)');
    return;
  }
  const names = capsh.trim().split('=')[1]!.split(',');
  // capsh prints unknown bits as numbers; every bit of our table must have its name.
  t.same(
    names,
    CAPABILITY_NAMES.map((n) => n.toLowerCase()),
  );
});

t.test('root on Linux 6.18 (this VM): everything except CAP_SYS_RESOURCE', async (t) => {
  const c = parseCapabilities(fixture('root-linux-6.18.status'));
  t.equal(c.effective, 0x000001fffeffffffn);
  t.equal(c.permitted, 0x000001fffeffffffn);
  t.equal(c.bounding, 0x000001fffeffffffn);
  t.equal(c.inheritable, 0n);
  t.equal(c.ambient, 0n);
  t.same(c.uids, { real: 0, effective: 0, saved: 0, fs: 0 });
  t.ok(hasCapability(c.effective, 'CAP_BPF'));
  t.ok(hasCapability(c.effective, 'CAP_PERFMON'));
  t.ok(hasCapability(c.effective, CAP_SYS_ADMIN));
  t.notOk(hasCapability(c.effective, CAP_SYS_RESOURCE), 'bit 24 is cleared on this VM');
  t.equal(capabilityNames(c.effective).length, 40);
  t.notOk(capabilityNames(c.effective).includes('CAP_SYS_RESOURCE'));
});

t.test('nobody after setpriv: no capabilities at all', async (t) => {
  const c = parseCapabilities(fixture('nobody-no-caps.status'));
  t.equal(c.effective, 0n);
  t.equal(c.permitted, 0n);
  t.equal(c.bounding, 0n);
  t.same(capabilityNames(c.effective), []);
  t.same(c.uids, { real: 65534, effective: 65534, saved: 65534, fs: 65534 });
});

t.test('nobody with ambient CAP_BPF and CAP_PERFMON', async (t) => {
  const c = parseCapabilities(fixture('nobody-bpf-perfmon.status'));
  t.same(capabilityNames(c.effective), ['CAP_PERFMON', 'CAP_BPF']);
  t.same(capabilityNames(c.ambient!), ['CAP_PERFMON', 'CAP_BPF']);
  t.equal(c.uids?.effective, 65534);
});

t.test('nobody with CAP_BPF only', async (t) => {
  const c = parseCapabilities(fixture('nobody-bpf-only.status'));
  t.same(capabilityNames(c.effective), ['CAP_BPF']);
  t.notOk(hasCapability(c.effective, CAP_PERFMON));
});

t.test("Docker's default set: 14 capabilities, none that profiling needs", async (t) => {
  const c = parseCapabilities(fixture('docker-default-caps.status'));
  t.same(capabilityNames(c.effective), [
    'CAP_CHOWN',
    'CAP_DAC_OVERRIDE',
    'CAP_FOWNER',
    'CAP_FSETID',
    'CAP_KILL',
    'CAP_SETGID',
    'CAP_SETUID',
    'CAP_SETPCAP',
    'CAP_NET_BIND_SERVICE',
    'CAP_NET_RAW',
    'CAP_SYS_CHROOT',
    'CAP_MKNOD',
    'CAP_AUDIT_WRITE',
    'CAP_SETFCAP',
  ]);
  for (const cap of ['CAP_BPF', 'CAP_PERFMON', 'CAP_SYS_ADMIN'] as const) t.notOk(hasCapability(c.effective, cap), cap);
});

t.test('root on Linux 5.4: bits 0..37, no CAP_PERFMON/CAP_BPF', async (t) => {
  const c = parseCapabilities(fixture('root-linux-5.4.status'));
  t.equal(capabilityNames(c.effective).length, 38);
  t.equal(capabilityNames(c.effective).at(-1), 'CAP_AUDIT_READ');
  t.notOk(hasCapability(c.effective, CAP_BPF));
  t.ok(hasCapability(c.effective, CAP_SYS_ADMIN));
});

t.test('malformed or incomplete status files are EINPUT errors, never "no capabilities"', async (t) => {
  t.throws(() => parseCapabilities(fixture('missing-capeff.status')), { code: 'EINPUT', message: /CapEff/ });
  const cases: Array<[string, string]> = [
    ['empty', ''],
    ['no Cap lines', 'Name:\tcat\nUid:\t0\t0\t0\t0\n'],
    ['CapPrm only', 'CapPrm:\t0000000000000000\n'],
    ['not hex', 'CapPrm:\t0\nCapEff:\tzzzzzzzzzzzzzzzz\n'],
    ['too long', 'CapPrm:\t0\nCapEff:\t00000000000000000\n'],
    ['empty value', 'CapPrm:\t0\nCapEff:\t\n'],
  ];
  for (const [name, text] of cases) {
    t.throws(() => parseCapabilities(text), { code: 'EINPUT' }, name);
  }
  // Tolerated: CRLF, missing optional lines, odd uid lines.
  const ok = parseCapabilities('CapEff:\t0000008000000000\r\nCapPrm:\t0000008000000000\r\nUid:\tx\n');
  t.equal(ok.effective, 1n << 39n);
  t.equal(ok.uids, undefined);
  t.equal(ok.bounding, undefined);
});

t.test('fuzz: mutated status files either parse or throw EbpfprofError', async (t) => {
  const rand = intPrng(0x9e3779b9);
  const bases = fs.readdirSync(statusDir).filter((f) => f.endsWith('.status')).map(fixture);
  let parsed = 0;
  let rejected = 0;
  let tooWide = 0;
  for (let i = 0; i < 3000; i++) {
    const buf = Buffer.from(bases[rand(bases.length)]!);
    const mutations = 1 + rand(8);
    for (let m = 0; m < mutations; m++) buf[rand(buf.length)] = rand(3) === 0 ? 0x0a : rand(256);
    const input = rand(4) === 0 ? buf.subarray(0, rand(buf.length)) : buf;
    try {
      const c = parseCapabilities(input);
      if (!(c.effective >= 0n && c.effective < 1n << 64n)) tooWide++;
      parsed++;
    } catch (e) {
      if (!(e instanceof EbpfprofError) || e.code !== 'EINPUT') {
        t.fail(`unexpected ${String(e)} for input ${JSON.stringify(input.toString('latin1'))}`);
        return;
      }
      rejected++;
    }
  }
  t.equal(tooWide, 0, 'every parsed CapEff fits 64 bits');
  t.ok(parsed > 0 && rejected > 0, `both outcomes happen (parsed ${parsed}, rejected ${rejected})`);
});

t.test('our own process: the reader matches the file, and root holds CAP_BPF and CAP_PERFMON', async (t) => {
  const own = readCapabilities();
  const again = parseCapabilities(fs.readFileSync('/proc/self/status'));
  t.equal(own.effective, again.effective);
  t.equal(own.permitted, again.permitted);
  t.equal(own.uids?.effective, process.geteuid!());
  t.equal(readCapabilities(process.pid).effective, own.effective, 'by pid as well as self');
  t.throws(() => readCapabilities(2 ** 22 + 1), { code: 'ENOPROC' });
  if (!(await requireKernelFeature(t, 'root'))) return;
  t.ok(hasCapability(own.effective, 'CAP_BPF'), 'root holds CAP_BPF');
  t.ok(hasCapability(own.effective, 'CAP_PERFMON'), 'root holds CAP_PERFMON');
});
