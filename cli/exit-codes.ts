// SPDX-License-Identifier: Apache-2.0
/** Exit codes of the CLI: 0 success, 1 a runtime failure, 2 bad usage or arguments. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
