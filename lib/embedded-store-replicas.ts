/**
 * The embedded store keeps a service's collections in its own node's files, so a second node hosting
 * the same stateful service is a second, separate shop (two stocks, two order books): oversold
 * stock, promotion limits counted twice, every message sent twice. Over a transporter, the node that
 * started later gives way; MONGO_URI shares one database and lifts the rule.
 */

/** What a stateful service on the embedded store announces in its metadata. */
export interface EmbeddedStoreMark {
	/** When the process hosting it started (ms since the epoch): the older node keeps the service. */
	since: number;
}

export interface HostedService {
	name: string;
	nodeID: string;
	metadata?: { embeddedStore?: EmbeddedStoreMark } | null;
}

/**
 * The other node hosting `name` on its own embedded store that this node must give way to, or null.
 * The older start wins; equal starts are decided by node id, so both nodes agree on one of them.
 */
export function embeddedStoreRival(self: { name: string; nodeID: string; since: number }, services: HostedService[]): HostedService | null {
	for (const s of services) {
		const mark = s.metadata?.embeddedStore;
		if (s.name !== self.name || s.nodeID === self.nodeID || !mark || typeof mark.since !== "number") continue;
		if (mark.since < self.since || (mark.since === self.since && s.nodeID < self.nodeID)) return s;
	}
	return null;
}
