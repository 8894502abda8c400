/** Every fixed conformance case, in run order. */
import type { Case } from './case.ts';
import { CHANGE_CASES } from './cases-changes.ts';
import { IP_BLOCK_CASES } from './cases-ip-block.ts';
import { ISOLATION_CASES } from './cases-isolation.ts';
import { PORT_CASES } from './cases-ports.ts';
import { SELECTOR_CASES } from './cases-selectors.ts';

/** The fixed cases of the suite. */
export const CASES: Case[] = [...ISOLATION_CASES, ...SELECTOR_CASES, ...PORT_CASES, ...IP_BLOCK_CASES, ...CHANGE_CASES];
