export type { BudgetListener, BudgetSlot, ConnectionBudget } from './core/connection-budget.js'
export type {
  AcquireTraceContext,
  AvailableMessage,
  ClampMessage,
  CloseMessage,
  ConnectErrorMessage,
  ConnectionMessage,
  ConnectTraceContext,
  InvalidateMessage,
  LeakMessage,
  PoolMessage,
  ReleaseMessage,
  ResetMessage,
  ServerMessage,
  UnavailableMessage,
  WarningMessage,
} from './core/diagnostics-channels.js'
export type {
  ConnectFailure,
  Dialect,
  DialectTarget,
  PoolerInfo,
  ReadOnlyScope,
  ResetMode,
  ServerInfo,
  ServerRole,
  TransactionStep,
} from './core/dialect.js'
export {
  AcquireTimeoutError,
  BudgetTimeoutError,
  CloseTimeoutError,
  ConnectError,
  DriverMissingError,
  type ErrorCode,
  InvalidOptionError,
  LeaseReleasedError,
  NamedStatementError,
  PingTimeoutError,
  PipelineAbortedError,
  PoolClosedError,
  PoolError,
  ResetTimeoutError,
  ScopeEndedError,
  TooManyWaitersError,
  TransactionFailedError,
  UnavailableError,
  type WarningCode,
  WrongRoleError,
} from './core/errors.js'
export type { InvalidateReason, PoolEvents, PoolListener } from './core/events.js'
export { Lease } from './core/lease.js'
export { Pool } from './core/pool.js'
export type {
  AcquireOptions,
  CloseOptions,
  PoolOptions,
  ResolvedPoolOptions,
  TargetSessionAttrs,
} from './core/pool-options.js'
export {
  RequestScope,
  type RequestScopeOptions,
  type ScopeOutcome,
} from './core/request-scope.js'
export type { PoolStats } from './core/stats.js'
export type { UrlPoolOptions } from './create-pool.js'
export { createPool } from './create-pool.js'
export type {
  ScopedConnection,
  ScopedConnectionTypes,
} from './integrations/scoped-connection.js'
