// The /api/v1 types the console uses, written by hand from the contract of issue 15 (first slice).
// Replaced by generated types once api/openapi.json lands: `npm run gen:api` writes
// src/api/openapi.d.ts from it with openapi-typescript, and this file then re-exports those
// schemas instead of declaring them. Keep it to what the contract says; add nothing the server
// does not answer.

export type TargetState = 'pending' | 'applying' | 'healthy' | 'failed' | 'rolled_back' | 'superseded';

export interface Running {
  release: number;
  config_revision: string;
  source_revision: string;
  image_digests: Record<string, string>;
}

export interface Latest {
  release: number;
  state: TargetState;
  message: string;
}

export interface MatrixCell {
  environment: string;
  cluster: string;
  mode: 'push' | 'pull';
  running: Running | null;
  latest: Latest;
  behind: number;
}

export interface MatrixApp {
  app: string;
  cells: MatrixCell[];
}

export interface Matrix {
  environments: string[]; // promotion order
  apps: MatrixApp[];
}

export interface ReleaseTarget {
  environment: string;
  cluster: string;
  state: TargetState;
  message: string;
  finished_at: string | null;
}

export interface Release {
  id: number;
  app: string;
  config_revision: string;
  source_revision: string;
  image_digests: Record<string, string>;
  started_by: string;
  run: number | null;
  created_at: string;
  targets: ReleaseTarget[];
}

export interface Run {
  id: number;
  pipeline: string;
  repo: string;
  ref: string;
  commit: string;
  event: string;
  state: string;
  message: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  approved_by: string;
  project: string;
}

export interface Step {
  name: string;
  state: string;
  exit_code: number | null;
  started_at: string | null;
  finished_at: string | null;
}

export interface RunDetail extends Run {
  steps: Step[];
}

export interface List<T> {
  items: T[];
  next: string | null;
}

// RFC 9457 problem details, as every /api/v1 error answers.
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  reason: string;
}

// Server-Sent Events of GET /api/v1/events, by event name.
export interface Events {
  run: {id: number; state: string};
  step: {run: number; name: string; state: string};
  log: {run: number; step: string; seq: number; text: string};
  release: {app: string; release: number; environment: string; cluster: string; state: TargetState};
}
