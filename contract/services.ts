/** GET /v1/services: what the agent's socket load balancer serves (agent/services/start.ts writes it, `sluice service list` reads it). */

/** One backend of a frontend. */
export interface ServiceBackendReport {
  address: string;
  port: number;
  /** ready: takes new flows; not-ready and terminating: listed, never chosen. */
  state: 'ready' | 'not-ready' | 'terminating';
  /** "namespace/name" of the pod behind it, when known. */
  pod?: string;
  /** New connections (TCP connects, UDP connects and sends) the socket hooks sent it, since it got its id. */
  newFlows: number;
}

/** One Service address + port + protocol. */
export interface ServiceFrontendReport {
  namespace: string;
  name: string;
  portName: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  address: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  nodePort?: number;
  sessionAffinity: 'None' | 'ClientIP';
  /** False when the load balancer does not serve it (SCTP; or a map write failed: see the response's syncError). */
  served: boolean;
  backends: ServiceBackendReport[];
}

/** The body of GET /v1/services. */
export interface ServicesResponse {
  /** False with --socket-lb off, or when the hooks could not be attached (reason says why). */
  enabled: boolean;
  reason?: string;
  /** The last sync's failures (retried on the next), or null. */
  syncError: string | null;
  frontends: ServiceFrontendReport[];
}
