// The /api/v1 types the console uses, generated from the repository's OpenAPI document
// (api/openapi.json) by openapi-typescript into openapi.d.ts at build time (`npm run gen:api`;
// CMake runs it before every build). Nothing here is declared by hand: each name is a schema of
// the document, so a change to the API that the console does not follow fails `tsc`.
import type {components} from './openapi';

type Schemas = components['schemas'];

export type Matrix = Schemas['Matrix'];
export type MatrixApp = Matrix['apps'][number];
export type MatrixCell = Schemas['Cell'];
export type Running = Schemas['Running'];
export type Latest = Schemas['Latest'];
export type TargetState = Schemas['Latest']['state'];
export type Release = Schemas['Release'];
export type ReleaseTarget = Schemas['TargetSummary'];
export type Run = Schemas['Run'];
export type Step = Schemas['Step'];
export type RunDetail = Schemas['RunDetail'];
export type Problem = Schemas['Problem'];
export type AppDetail = Schemas['AppDetail'];
export type AppTargetDetail = Schemas['AppTargetDetail'];
export type AppOperationResult = Schemas['AppOperationResult'];
export type ResourceTree = Schemas['ResourceTree'];
export type ResourceNode = Schemas['ResourceNode'];
export type AppDiff = Schemas['AppDiff'];
export type ObjectDiff = Schemas['ObjectDiff'];
export type KubeEventList = Schemas['KubeEventList'];
export type ActionStarted = Schemas['ActionStarted'];
export type Cluster = Schemas['Cluster'];
export type ClusterApp = Schemas['ClusterApp'];
export type Environment = Schemas['Environment'];
export type WaitingRelease = Schemas['WaitingRelease'];
export type Approval = Schemas['Approval'];
export type ReleaseLinks = Schemas['ReleaseLinks'];
export type ReleaseFlow = Schemas['ReleaseFlow'];
export type FlowEnvironment = Schemas['FlowEnvironment'];
export type FlowCluster = Schemas['FlowCluster'];
export type SyncPreview = Schemas['SyncPreview'];
export type Terminated = Schemas['Terminated'];
export type CommitSummary = Schemas['CommitSummary'];
export type Pipeline = Schemas['Pipeline'];
export type Project = Schemas['Project'];
export type ApiToken = Schemas['ApiToken'];
export type NewApiToken = Schemas['NewApiToken'];

// A page of a list: RunList, ReleaseList, ... share this shape.
export interface List<T> {
  items: T[];
  next: string | null;
}

// Server-Sent Events of GET /api/v1/events, by event name.
export interface Events {
  run: Schemas['RunEvent'];
  step: Schemas['StepEvent'];
  log: Schemas['LogEvent'];
  release: Schemas['ReleaseEvent'];
  app: Schemas['AppEvent'];
  reset: Schemas['ResetEvent'];
}
