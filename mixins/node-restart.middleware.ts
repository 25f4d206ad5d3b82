/**
 * Calls to a node that died and came back under the same node ID before its death was noticed.
 *
 * A container restarted by Kubernetes keeps its hostname and often its pid, so its new run has the
 * same node ID and is back within seconds, before the heartbeat timeout marks the old run gone.
 * Moleculer then only sees the node "updated" (a new instanceID) and keeps every request sent to
 * the old run pending: nothing will ever answer it, and each caller waited out its whole timeout
 * (a stopping gateway waited for them too, past SHUTDOWN_TIMEOUT). A new run means the old one's
 * requests are lost, so they are rejected at once, as Moleculer does when a node disconnects:
 * RequestRejectedError, which the caller's retry policy may send again (to the new run).
 */
import type { Middleware, ServiceBroker } from "moleculer";

interface NodeEvent {
	node: { id: string; instanceID: string | null; local?: boolean };
}

export function NodeRestartMiddleware(): Middleware {
	return {
		name: "NodeRestart",
		created(broker: ServiceBroker) {
			const runs = new Map<string, string | null>();
			const bus = (broker as any).localBus;
			const seen = ({ node }: NodeEvent) => {
				if (node.local) return;
				const before = runs.get(node.id);
				runs.set(node.id, node.instanceID);
				if (before && node.instanceID && before !== node.instanceID) {
					broker.logger.warn(`Node '${node.id}' restarted (a new run under the same node ID): requests pending on its old run are rejected.`);
					broker.transit?.removePendingRequestByNodeID(node.id);
				}
			};
			bus.on("$node.connected", seen);
			bus.on("$node.updated", seen);
			// A disconnect rejects its pending requests already; the node's next run starts afresh.
			bus.on("$node.disconnected", ({ node }: NodeEvent) => runs.delete(node.id));
		},
	} as Middleware;
}
