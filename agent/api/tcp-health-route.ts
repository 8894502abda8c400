/** GET /v1/tcp-health: TCP health per local pod (agent/tcp-health.ts; the body is contract/tcp-health.ts). */
import type { Route } from './server.ts';
import type { TcpHealth } from '../tcp-health.ts';

/** The TCP health route. */
export function tcpHealthRoute(tcpHealth: Pick<TcpHealth, 'report'>): Route {
  return { method: 'GET', pattern: '/v1/tcp-health', handler: () => tcpHealth.report() };
}
