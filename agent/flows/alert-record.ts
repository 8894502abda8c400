/**
 * A runtime security alert as a flow record (type `alert`), so that
 * `sluice observe` and the UI's table show alerts among the flows: the
 * source is the pod (or the host), the destination a connect's peer when
 * the event was a connect. The full alert stays in `sluice security events`.
 */
import type { FlowEndpoint, FlowRecord } from '../../contract/flows.ts';
import type { SecurityAlert } from '../../contract/security.ts';

export function alertRecordOf(a: SecurityAlert): FlowRecord {
  const e = a.event;
  const source: FlowEndpoint = e.pod
    ? { ip: '', port: 0, identity: 0, name: `${e.pod.namespace}/${e.pod.name}`, namespace: e.pod.namespace, pod: e.pod.name, labels: e.pod.labels }
    : { ip: '', port: 0, identity: 0, name: 'host' };
  const destination: FlowEndpoint = e.connect ? { ip: e.connect.ip, port: e.connect.port, identity: 0, name: e.connect.ip } : { ip: '', port: 0, identity: 0, name: '' };
  return {
    time: a.time,
    type: 'alert',
    verdict: e.enforced ? 'DENIED' : 'ALLOWED',
    reason: `security rule${e.enforced ? ` (${e.enforced})` : ''}`,
    source,
    destination,
    protocol: e.connect?.protocol ?? '',
    direction: '',
    isReply: false,
    interface: { index: 0 },
    alert: { rule: a.rule, priority: a.priority, output: a.output, action: a.action },
    bytes: 0,
    summary: `${source.name} ${a.priority} ${a.rule}${a.action !== 'alert' ? ` [${a.action}]` : ''}: ${a.output}`,
  };
}
