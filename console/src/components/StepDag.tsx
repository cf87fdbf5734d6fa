// A run's steps as a DAG: one column per depth (a step sits one column right of the deepest step it
// needs), an edge from each need to the step that waits for it. Each step is a button: a click (or
// Enter) selects it; the arrow keys move between steps (up/down within a column, left/right to the
// nearest step of the next column), Home/End to the first/last step.

import {useRef, type KeyboardEvent} from 'react';

import type {Step} from '../api/contract';

export interface DagNode {
  step: Step;
  column: number;
  row: number;
}

export interface DagLayout {
  nodes: DagNode[];
  columns: number;
  rows: number;
  edges: {from: string; to: string}[];
}

// Columns by depth (steps without needs, or whose needs are not in the run, are column 0); rows in
// the order the steps came. A cycle (never from the server, which rejects them) is cut where found.
export function layoutDag(steps: Step[]): DagLayout {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const depth = new Map<string, number>();
  const visiting = new Set<string>();
  const depthOf = (name: string): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    if (visiting.has(name)) return 0;
    visiting.add(name);
    let d = 0;
    for (const n of byName.get(name)?.needs ?? []) {
      if (byName.has(n)) d = Math.max(d, depthOf(n) + 1);
    }
    visiting.delete(name);
    depth.set(name, d);
    return d;
  };
  const perColumn: number[] = [];
  const nodes = steps.map((step) => {
    const column = depthOf(step.name);
    const row = perColumn[column] ?? 0;
    perColumn[column] = row + 1;
    return {step, column, row};
  });
  const edges = steps.flatMap((s) => (s.needs ?? []).filter((n) => byName.has(n)).map((n) => ({from: n, to: s.name})));
  return {nodes, columns: perColumn.length, rows: Math.max(0, ...perColumn), edges};
}

const kW = 180; // a column's width
const kNodeW = 150;
const kH = 56; // a row's height
const kNodeH = 40;

export function StepDag({steps, stateOf, selected, onSelect}: {
  steps: Step[];
  stateOf?: (s: Step) => string;
  selected?: string | null;
  onSelect: (name: string) => void;
}) {
  const layout = layoutDag(steps);
  const refs = useRef(new Map<string, HTMLButtonElement>());
  const at = new Map(layout.nodes.map((n) => [n.step.name, n]));
  const focus = (n: DagNode | undefined) => n && refs.current.get(n.step.name)?.focus();
  const key = (e: KeyboardEvent, n: DagNode) => {
    const inColumn = (c: number) => layout.nodes.filter((x) => x.column === c);
    const nearest = (c: number) => inColumn(c).reduce<DagNode | undefined>(
      (best, x) => (!best || Math.abs(x.row - n.row) < Math.abs(best.row - n.row) ? x : best), undefined);
    let to: DagNode | undefined;
    if (e.key === 'ArrowDown') to = inColumn(n.column).find((x) => x.row === n.row + 1);
    else if (e.key === 'ArrowUp') to = inColumn(n.column).find((x) => x.row === n.row - 1);
    else if (e.key === 'ArrowRight') to = nearest(n.column + 1);
    else if (e.key === 'ArrowLeft') to = nearest(n.column - 1);
    else if (e.key === 'Home') to = layout.nodes[0];
    else if (e.key === 'End') to = layout.nodes[layout.nodes.length - 1];
    else return;
    e.preventDefault();
    focus(to);
  };
  const width = layout.columns * kW;
  const height = layout.rows * kH;
  const x = (n: DagNode) => n.column * kW;
  const y = (n: DagNode) => n.row * kH;
  const current = selected ?? layout.nodes[0]?.step.name;
  return (
    <div className="dag" role="group" aria-label="Steps (arrow keys move between steps)" style={{width, height}}>
      <svg className="dag-edges" width={width} height={height} aria-hidden="true">
        {layout.edges.map(({from, to}) => {
          const a = at.get(from)!;
          const b = at.get(to)!;
          const x1 = x(a) + kNodeW, y1 = y(a) + kNodeH / 2, x2 = x(b), y2 = y(b) + kNodeH / 2;
          const mid = (x1 + x2) / 2;
          return <path key={`${from}->${to}`} data-edge={`${from}->${to}`} d={`M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`} />;
        })}
      </svg>
      {layout.nodes.map((n) => {
        const state = stateOf ? stateOf(n.step) : n.step.state;
        const needs = n.step.needs ?? [];
        return (
          <button key={n.step.name} type="button" ref={(el) => { if (el) refs.current.set(n.step.name, el); else refs.current.delete(n.step.name); }}
                  className={`dag-node state-${state}`} data-step={n.step.name} aria-pressed={selected === n.step.name}
                  tabIndex={n.step.name === current ? 0 : -1}
                  title={needs.length ? `needs ${needs.join(', ')}` : 'needs nothing'}
                  style={{left: x(n), top: y(n), width: kNodeW, height: kNodeH}}
                  onClick={() => onSelect(n.step.name)} onKeyDown={(e) => key(e, n)}>
            <span className="dag-name">{n.step.name}</span>
            <span className="dag-state">
              {state}
              {n.step.attempts > 1 && ` · ${n.step.attempts} attempts`}
              {n.step.exit_code !== null && n.step.exit_code !== 0 && ` · exit ${n.step.exit_code}`}
            </span>
          </button>
        );
      })}
    </div>
  );
}
