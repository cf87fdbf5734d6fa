import {cleanup, fireEvent, render, screen} from '@testing-library/react';
import {afterEach, describe, expect, it, vi} from 'vitest';

import type {Step} from '../api/contract';
import {StepDag, layoutDag} from './StepDag';

afterEach(cleanup);

const step = (name: string, needs: string[] = [], over: Partial<Step> = {}): Step =>
  ({name, state: 'succeeded', exit_code: 0, started_at: null, finished_at: null, needs, attempts: 1, ...over});

// build → (test, lint) → deploy; docs alone.
const steps = [step('build'), step('test', ['build']), step('lint', ['build']), step('docs'),
               step('deploy', ['test', 'lint'], {state: 'failed', exit_code: 2, attempts: 3})];

describe('layoutDag', () => {
  it('puts each step one column right of the deepest step it needs', () => {
    const l = layoutDag(steps);
    const col = Object.fromEntries(l.nodes.map((n) => [n.step.name, [n.column, n.row]]));
    expect(col).toEqual({build: [0, 0], docs: [0, 1], test: [1, 0], lint: [1, 1], deploy: [2, 0]});
    expect(l.columns).toBe(3);
    expect(l.rows).toBe(2);
    expect(l.edges).toEqual([{from: 'build', to: 'test'}, {from: 'build', to: 'lint'}, {from: 'test', to: 'deploy'},
                             {from: 'lint', to: 'deploy'}]);
  });

  it('ignores needs of steps the run does not have', () => {
    const l = layoutDag([step('only', ['gone'])]);
    expect(l.nodes[0].column).toBe(0);
    expect(l.edges).toEqual([]);
  });
});

describe('StepDag', () => {
  it('draws an edge per need and says how each step went', () => {
    const {container} = render(<StepDag steps={steps} onSelect={() => {}} />);
    const edges = [...container.querySelectorAll('path[data-edge]')].map((p) => p.getAttribute('data-edge'));
    expect(edges.sort()).toEqual(['build->lint', 'build->test', 'lint->deploy', 'test->deploy']);
    const deploy = screen.getByRole('button', {name: /deploy/});
    expect(deploy.textContent).toContain('failed · 3 attempts · exit 2');
    expect(deploy.getAttribute('title')).toBe('needs test, lint');
  });

  it('selects a step on click and moves focus with the arrow keys', () => {
    const onSelect = vi.fn();
    render(<StepDag steps={steps} onSelect={onSelect} />);
    const build = screen.getByRole('button', {name: /^build/});
    expect(build.tabIndex).toBe(0);
    build.focus();
    fireEvent.keyDown(build, {key: 'ArrowRight'});
    expect(document.activeElement).toBe(screen.getByRole('button', {name: /^test/}));
    fireEvent.keyDown(document.activeElement!, {key: 'ArrowDown'});
    expect(document.activeElement).toBe(screen.getByRole('button', {name: /^lint/}));
    fireEvent.keyDown(document.activeElement!, {key: 'ArrowRight'});
    expect(document.activeElement).toBe(screen.getByRole('button', {name: /^deploy/}));
    fireEvent.click(document.activeElement!);
    expect(onSelect).toHaveBeenCalledWith('deploy');
  });
});
