/**
 * Whether this node is cut off from the other nodes, for the readiness probe
 * (mixins/health-probe.middleware.ts). The NATS client reconnects by itself, and Moleculer's
 * transporter still reads "connected" meanwhile: only the client's status stream tells of the outage.
 * A gateway that cannot reach the nodes of its services then leaves the load balancer's rotation
 * instead of answering 503s, and the operator reads why in the log.
 */
import type { ServiceBroker } from "moleculer";

interface NatsStatus {
	type: string;
}
interface StatusSource {
	status(): AsyncIterable<NatsStatus>;
}

/** Since when each broker's transporter connection is down. */
const lostSince = new WeakMap<ServiceBroker, number>();

/** Follows the transporter client's status from now on, when it reports one (NATS). */
export function watchTransporter(broker: ServiceBroker): void {
	const client = (broker.transit?.tx as { client?: Partial<StatusSource> } | undefined)?.client;
	if (typeof client?.status !== "function") return;
	const statuses = client.status();
	const logger = broker.getLogger("TRANSPORTER");
	void (async () => {
		for await (const s of statuses) {
			if (s.type === "disconnect" && !lostSince.has(broker)) {
				lostSince.set(broker, Date.now());
				logger.warn("Lost the connection to the transporter: the node is not ready, and calls to other nodes fail, until it is back.");
			} else if (s.type === "reconnect" && lostSince.has(broker)) {
				logger.info(`The transporter connection is back after ${((Date.now() - lostSince.get(broker)!) / 1000).toFixed(1)} s.`);
				lostSince.delete(broker);
			}
		}
	})().catch((err) => logger.warn(`Following the transporter's status failed: ${(err as Error).message}`));
}

/** ["transporter: disconnected"] while the node cannot reach the others; [] alone or connected. */
export function transporterOutages(broker: ServiceBroker): string[] {
	const transit = broker.transit as { connected?: boolean } | undefined;
	if (!transit) return [];
	// Before the start and while stopping, the probe says so itself.
	const closed = broker.started && !broker.stopping && transit.connected === false;
	return closed || lostSince.has(broker) ? ["transporter: disconnected"] : [];
}
