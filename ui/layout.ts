/**
 * Where the page draws the service map: one box per namespace (the ends that
 * are not pods in a last box of their own), the nodes on a grid inside it,
 * boxes left to right, wrapping into rows. Pure and deterministic (sorted
 * names), so the picture does not jump between two polls with the same nodes.
 */
import { OUTSIDE, type MapNode } from './service-map.ts';

const CELL_WIDTH = 230;
const CELL_HEIGHT = 130;
const BOX_PADDING = 16;
const BOX_HEADER = 26;
const BOX_GAP = 36;
/** A row of boxes wraps past this width (px). */
const MAX_ROW_WIDTH = 1180;

/** A namespace's box. */
export interface GroupBox {
  namespace: string;
  label: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A node and the centre of its circle. */
export interface PlacedNode extends MapNode {
  x: number;
  y: number;
}

/** The whole picture. */
export interface MapLayout {
  width: number;
  height: number;
  groups: GroupBox[];
  nodes: PlacedNode[];
}

/** Places nodes (any order) into namespace boxes. */
export function layoutMap(nodes: MapNode[]): MapLayout {
  const byNamespace = new Map<string, MapNode[]>();
  for (const n of nodes) {
    const list = byNamespace.get(n.namespace) ?? [];
    list.push(n);
    byNamespace.set(n.namespace, list);
  }
  const namespaces = [...byNamespace.keys()].filter((ns) => ns !== OUTSIDE).sort();
  if (byNamespace.has(OUTSIDE)) namespaces.push(OUTSIDE);

  const groups: GroupBox[] = [];
  const placed: PlacedNode[] = [];
  let x = BOX_GAP / 2;
  let y = BOX_GAP / 2;
  let rowHeight = 0;
  let width = 0;
  for (const ns of namespaces) {
    const members = byNamespace.get(ns)!.sort((a, b) => a.label.localeCompare(b.label) || a.id.localeCompare(b.id));
    const columns = Math.max(1, Math.ceil(Math.sqrt(members.length)));
    const rows = Math.ceil(members.length / columns);
    const boxWidth = columns * CELL_WIDTH + 2 * BOX_PADDING;
    const boxHeight = rows * CELL_HEIGHT + 2 * BOX_PADDING + BOX_HEADER;
    if (x > BOX_GAP / 2 && x + boxWidth > MAX_ROW_WIDTH) {
      x = BOX_GAP / 2;
      y += rowHeight + BOX_GAP;
      rowHeight = 0;
    }
    groups.push({ namespace: ns, label: ns === OUTSIDE ? 'outside the pods' : `namespace ${ns}`, x, y, width: boxWidth, height: boxHeight });
    members.forEach((n, i) => {
      const col = i % columns;
      const row = Math.floor(i / columns);
      placed.push({ ...n, x: x + BOX_PADDING + col * CELL_WIDTH + CELL_WIDTH / 2, y: y + BOX_HEADER + BOX_PADDING + row * CELL_HEIGHT + CELL_HEIGHT / 2 });
    });
    x += boxWidth + BOX_GAP;
    width = Math.max(width, x - BOX_GAP / 2);
    rowHeight = Math.max(rowHeight, boxHeight);
  }
  return { width: Math.max(width, 200), height: y + rowHeight + BOX_GAP / 2, groups, nodes: placed };
}
