// SPDX-License-Identifier: Apache-2.0
// Locations tests need. Tests run compiled from dist/test/, so the repository root is two levels up.
import * as path from 'node:path';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');
export const fixturesDir = path.join(repoRoot, 'test', 'fixtures');
export const workloadsDir = path.join(repoRoot, 'test', 'workloads');
export const cliPath = path.join(repoRoot, 'dist', 'cli', 'main.js');
