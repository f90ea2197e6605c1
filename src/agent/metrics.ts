// SPDX-License-Identifier: Apache-2.0
/** The agent's self-metrics in the Prometheus text exposition format (GET /metrics). */

export interface MetricPoint {
  name: string;
  type: 'counter' | 'gauge';
  help: string;
  value: number;
  labels?: Record<string, string>;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Renders points; points of one name (differing in labels) share one HELP/TYPE header. */
export function renderPrometheus(points: readonly MetricPoint[]): string {
  const lines: string[] = [];
  const seen = new Set<string>();
  for (const p of points) {
    if (!seen.has(p.name)) {
      seen.add(p.name);
      lines.push(`# HELP ${p.name} ${p.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${p.name} ${p.type}`);
    }
    const labels = p.labels && Object.keys(p.labels).length > 0 ? `{${Object.entries(p.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
    lines.push(`${p.name}${labels} ${formatValue(p.value)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Parses the text format back into name{labels} -> value (tests, benchmarks, `ebpfprof agent` probes). */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    if (i < 0) continue;
    const v = line.slice(i + 1);
    out.set(line.slice(0, i), v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v));
  }
  return out;
}
