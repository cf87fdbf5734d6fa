// An application's resource tree as a graph of owner references (Deployment → ReplicaSet → Pod),
// drawn as nested boxes: each object is a button coloured by its health, its children below it.
// No layout library: the tree is at most a few levels deep, and nesting keeps it readable and
// keyboard-navigable (Tab moves from object to object, Enter selects one).

import type {ResourceNode} from '../api/contract';

export function nodeKey(n: Pick<ResourceNode, 'group' | 'kind' | 'namespace' | 'name'>): string {
  return `${n.group}/${n.kind}/${n.namespace}/${n.name}`;
}

const kHealthClass: Record<string, string> = {
  Healthy: 'ok', Degraded: 'bad', Missing: 'bad', Progressing: 'busy', Suspended: 'wait',
};

export function healthClass(status: string): string {
  return kHealthClass[status] ?? 'other';
}

// Roots (objects no other node owns) and each node's children by its uid.
export function layout(nodes: ResourceNode[]): {roots: ResourceNode[]; children: Map<string, ResourceNode[]>} {
  const uids = new Set(nodes.map((n) => n.uid).filter((u) => u !== ''));
  const children = new Map<string, ResourceNode[]>();
  const roots: ResourceNode[] = [];
  for (const n of nodes) {
    const owner = n.owners.find((o) => uids.has(o));
    if (owner === undefined) {
      roots.push(n);
    } else {
      children.set(owner, [...(children.get(owner) ?? []), n]);
    }
  }
  return {roots, children};
}

export function ResourceGraph({nodes, selected, onSelect}: {
  nodes: ResourceNode[];
  selected: string | null;
  onSelect: (n: ResourceNode) => void;
}) {
  const {roots, children} = layout(nodes);
  const draw = (n: ResourceNode, seen: Set<string>) => {
    const key = nodeKey(n);
    const kids = n.uid && !seen.has(n.uid) ? children.get(n.uid) ?? [] : [];
    const next = new Set(seen).add(n.uid);
    return (
      <li key={key} className="rg-item">
        <button type="button" className={`rg-node rg-${healthClass(n.health.status)}`} aria-pressed={selected === key}
                onClick={() => onSelect(n)} title={n.health.message || undefined}>
          <span className="rg-kind">{n.kind}</span>
          <span className="rg-name">{n.namespace ? `${n.namespace}/` : ''}{n.name}</span>
          <span className="rg-state">{n.health.status}{n.sync ? ` · ${n.sync}` : ''}</span>
        </button>
        {kids.length > 0 && <ul className="rg-children">{kids.map((k) => draw(k, next))}</ul>}
      </li>
    );
  };
  if (nodes.length === 0) return <p className="empty-state">No objects.</p>;
  return <ul className="rg" aria-label="Resource tree">{roots.map((r) => draw(r, new Set()))}</ul>;
}
