/** GET /v1/services: every frontend of the socket load balancer with its backends (contract/services.ts). */
import type { Route } from './server.ts';
import type { Services } from '../services/start.ts';

/** The Services route. */
export function serviceRoutes(services: Pick<Services, 'report'>): Route[] {
  return [{ method: 'GET', pattern: '/v1/services', handler: () => services.report() }];
}
