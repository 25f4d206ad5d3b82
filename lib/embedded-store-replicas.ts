/**
 * The embedded store keeps a service's collections in its own node's files, so a second node hosting
 * the same stateful service is a second, separate shop (two stocks, two order books): oversold
 * stock, promotion limits counted twice, every message sent twice; so is one on MongoDB next to one
 * on its own files. Over a transporter, the node that started later gives way; only nodes that all
 * share MongoDB (MONGO_URI) may host the same service.
 */

/** What a stateful service announces in its metadata about where it keeps its data. */
export interface StoreMark {
	/** When the process hosting it started (ms since the epoch): the older node keeps the service. */
	since: number;
	/** Its own files (DATA_DIR), not MongoDB. */
	embedded: boolean;
}

export interface HostedService {
	name: string;
	nodeID: string;
	metadata?: { store?: StoreMark } | null;
}

/**
 * The other node hosting `name` that this node must give way to, or null: one of the two keeps its
 * data on its own files. The older start wins; equal starts are decided by node id, so both nodes
 * agree on one of them.
 */
export function embeddedStoreRival(self: { name: string; nodeID: string } & StoreMark, services: HostedService[]): HostedService | null {
	for (const s of services) {
		const mark = s.metadata?.store;
		if (s.name !== self.name || s.nodeID === self.nodeID || !mark || typeof mark.since !== "number") continue;
		if (!mark.embedded && !self.embedded) continue;
		if (mark.since < self.since || (mark.since === self.since && s.nodeID < self.nodeID)) return s;
	}
	return null;
}
