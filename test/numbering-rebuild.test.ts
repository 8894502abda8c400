/**
 * The identity numbers rebuilt after numbering.db was lost: a label set gets
 * back the number its pods carry only when the evidence agrees both ways,
 * and no number any map or the reservation still holds is ever handed to
 * another label set (the policy entries keyed by it would judge the wrong pods).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { planNumbering } from '../agent/policy-sync/numbering-rebuild.ts';
import { FLOOR_KEY, NumberingStore } from '../agent/policy-sync/numbering-store.ts';
import { RESERVE_BLOCK, readReservation } from '../agent/policy-sync/numbering-reservation.ts';

const addresses = (entries: [string, number][]): Map<string, number> => new Map(entries);

describe('planNumbering', () => {
  it('gives each label set back the number all its pods carry', () => {
    const plan = planNumbering(
      [{ key: 'web', ips: ['10.0.0.2'] }, { key: 'web', ips: ['10.0.0.3'] }, { key: 'db', ips: ['10.0.0.4', 'fd00::4'] }],
      addresses([['10.0.0.2', 300], ['10.0.0.3', 300], ['10.0.0.4', 301], ['fd00::4', 301]]),
    );
    expect([...plan.adopted]).toEqual([['web', 300], ['db', 301]]);
    expect(plan.retired).toEqual([]);
  });

  it('gives a number shared by two label sets (a pod relabelled while the agent was down) to neither', () => {
    const plan = planNumbering([{ key: 'web', ips: ['10.0.0.2'] }, { key: 'web-v2', ips: ['10.0.0.3'] }], addresses([['10.0.0.2', 300], ['10.0.0.3', 300]]));
    expect(plan.adopted.size).toBe(0);
    expect(plan.retired).toMatchObject([{ number: 300 }]);
  });

  it('gives a label set whose pods carry two numbers neither', () => {
    const plan = planNumbering([{ key: 'web', ips: ['10.0.0.2'] }, { key: 'web', ips: ['10.0.0.3'] }], addresses([['10.0.0.2', 300], ['10.0.0.3', 302]]));
    expect(plan.adopted.size).toBe(0);
    expect(plan.retired.map((r) => r.number)).toEqual([300, 302]);
  });

  it('ignores addresses the maps do not number yet (a pod the agent had not synced)', () => {
    const plan = planNumbering([{ key: 'web', ips: ['10.0.0.2'] }, { key: 'web', ips: ['10.0.0.9'] }, { key: 'new', ips: ['10.0.0.8'] }], addresses([['10.0.0.2', 300]]));
    expect([...plan.adopted]).toEqual([['web', 300]]);
  });
});

describe('NumberingStore after a rebuild', () => {
  let dir: string;
  beforeEach(() => void (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st32-numbering-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps the numbers put back, hands out new ones above every number in use, and after a restart too', () => {
    const file = path.join(dir, 'numbering.db');
    const store = new NumberingStore(file);
    const floors = store.restore(new Map([['web', 300]]), { identity: 310, selector: 2 ** 24 + 5 });
    expect(floors).toEqual({ identity: 310, selector: 2 ** 24 + 5 });
    expect(store.identity('web')).toBe(300);
    expect(store.identity('other')).toBe(311);
    expect(store.selector('ports')).toBe(2 ** 24 + 6);
    store.close();
    const again = new NumberingStore(file);
    expect(again.identity('web')).toBe(300);
    expect(again.identity('third')).toBe(312);
    // The floor row is a number held down, no label set's.
    expect(again.identity(FLOOR_KEY)).toBe(310);
    again.close();
  });

  it('starts above the reservation when the maps hold less: no number ever handed out is handed out again', () => {
    const reservationFile = path.join(dir, 'numbering.reserved');
    const first = new NumberingStore(path.join(dir, 'numbering.db'), undefined, { reservationFile });
    const handed = ['a', 'b', 'c'].map((k) => first.identity(k));
    expect(handed).toEqual([256, 257, 258]);
    expect(readReservation(reservationFile)).toEqual({ identity: 256 + RESERVE_BLOCK, selector: 0 });
    first.close();
    // numbering.db lost; the maps name none of these numbers any more (their pods are gone).
    fs.rmSync(path.join(dir, 'numbering.db'));
    const rebuilt = new NumberingStore(path.join(dir, 'numbering.db'), undefined, { reservationFile });
    rebuilt.restore(new Map(), { identity: 255, selector: 2 ** 24 });
    const n = rebuilt.identity('d');
    expect(handed).not.toContain(n);
    expect(n).toBe(256 + RESERVE_BLOCK);
    rebuilt.close();
  });
});
