/**
 * When an interrupted checkout may be finished by whoever finds it. A checkout records the node (and
 * that node's run, its instance id) that runs its saga. Once that run is known to be over (its node
 * came back as a new run, or this node restarted) the checkout is finished at once. A node the
 * registry has lost is not proof: a paused or cut-off process keeps its run and may carry on, so its
 * checkouts wait `lostRunnerMs` (far beyond any request's timeouts and retries), and one whose
 * runner nobody can vouch for waits the whole stale window. One whose undoing failed (a service it
 * needed was down) is retried every little while: nobody runs it any more.
 */

/** The node run that drives a checkout's saga now. */
export interface SagaRunner {
	nodeID: string;
	instanceID: string;
}

/** What the broker's registry says of a node. */
export interface KnownNode {
	instanceID: string;
	available: boolean;
}

export interface RecoveryView {
	/** This node's run. */
	self: SagaRunner;
	/** The registry's entry for a node, if it knows it. */
	nodeOf: (nodeID: string) => KnownNode | undefined;
	/** Whether this node has been up long enough to have heard from every live node (a heartbeat timeout). */
	discoverySettled: boolean;
	/** A running checkout untouched this long is taken whatever its runner (the old rule). */
	staleMs: number;
	/** A running checkout whose runner's node the registry has lost (or never heard of) is taken once untouched this long. */
	lostRunnerMs: number;
	/** A checkout whose undoing failed is tried again after this long. */
	compensationRetryMs: number;
	/** Whether this node's run drives the order's saga now; without it, a saga of this run counts as driven. */
	drivenHere?: (orderId: string) => boolean;
}

/** The parts of a Moleculer broker the view below reads. */
export interface BrokerLike {
	nodeID: string;
	instanceID: string;
	options: { heartbeatTimeout?: number };
	transit?: unknown;
}

/**
 * What `broker` knows of node runs: itself, its registry's nodes, and whether discovery has settled
 * (it has been up, since `startedAt`, a heartbeat timeout; without a transporter at once: no other node).
 */
export function brokerRunView(broker: BrokerLike, startedAt: number): Pick<RecoveryView, "self" | "nodeOf" | "discoverySettled"> {
	const registry = (broker as unknown as { registry: { nodes: { get(id: string): KnownNode | undefined } } }).registry;
	return {
		self: { nodeID: broker.nodeID, instanceID: broker.instanceID },
		nodeOf: (nodeID) => registry.nodes.get(nodeID),
		discoverySettled: !broker.transit || Date.now() - startedAt >= (broker.options.heartbeatTimeout ?? 15) * 1000,
	};
}

export interface InterruptedCheckout {
	id: string;
	saga: { state: string; runner?: SagaRunner | null };
	updatedAt: Date | string;
}

/**
 * What is known of the run that drove this saga: "over" when this node restarted or the runner's
 * node came back as a new run; "lost" when the registry has lost its node (or, once discovery has
 * settled, never heard of it), which a pause or a network cut also looks like; else "alive".
 */
export function runnerState(runner: SagaRunner | null | undefined, view: Pick<RecoveryView, "self" | "nodeOf" | "discoverySettled">): "over" | "lost" | "alive" | "unknown" {
	if (!runner) return "unknown";
	if (runner.nodeID === view.self.nodeID) return runner.instanceID !== view.self.instanceID ? "over" : "alive";
	const node = view.nodeOf(runner.nodeID);
	if (node && node.instanceID !== runner.instanceID) return "over";
	if (!node || !node.available) return view.discoverySettled ? "lost" : "alive";
	return "alive";
}

/**
 * Whether nobody runs it any more, for work that is safe to finish twice (analytics' batches): its run
 * is over, or its node lost.
 */
export function runnerIsGone(runner: SagaRunner | null | undefined, view: Pick<RecoveryView, "self" | "nodeOf" | "discoverySettled">): boolean {
	const state = runnerState(runner, view);
	return state === "over" || state === "lost";
}

export function checkoutRecoveryDue(order: InterruptedCheckout, now: Date, view: RecoveryView): boolean {
	const idleMs = now.getTime() - new Date(order.updatedAt).getTime();
	if (order.saga.state === "compensation_failed") return idleMs >= view.compensationRetryMs;
	if (order.saga.state !== "running") return false;
	if (idleMs >= view.staleMs) return true;
	// This run's own saga that no longer runs here: it ended without recording how (its undoing failed, or
	// the write of its end did: a full disk). Nobody drives it; retried as a failed undoing is.
	const own = order.saga.runner?.nodeID === view.self.nodeID && order.saga.runner.instanceID === view.self.instanceID;
	if (own && view.drivenHere && !view.drivenHere(order.id)) return idleMs >= view.compensationRetryMs;
	const runner = runnerState(order.saga.runner, view);
	return runner === "over" || (runner === "lost" && idleMs >= view.lostRunnerMs);
}

export interface OrderOwingFollowUps {
	saga?: { state: string } | null;
	followUpLease?: Date | string | null;
	followUpRunner?: SagaRunner | null;
	updatedAt: Date | string;
}

/**
 * Whether an order's pending follow-ups (a cancel's refund, a payment's confirmation...) need a
 * driver now: nobody holds them and they have not moved for `compensationRetryMs` (the request that
 * drove them failed: a service was down), or their holder's run is over (its node died and came
 * back). A lease a live run holds is left to it; a checkout still running is recovered as such.
 */
export function followUpsDue(order: OrderOwingFollowUps, now: Date, view: Pick<RecoveryView, "self" | "nodeOf" | "discoverySettled" | "compensationRetryMs">): boolean {
	if (order.saga?.state === "running") return false;
	const lease = order.followUpLease ? new Date(order.followUpLease).getTime() : 0;
	if (lease > now.getTime()) return runnerState(order.followUpRunner, view) === "over";
	return now.getTime() - new Date(order.updatedAt).getTime() >= view.compensationRetryMs;
}

/** Thrown by a saga whose checkout another run has taken over: it stops without undoing anything. */
export class SagaTakenOverError extends Error {
	constructor(readonly orderId: string) {
		super(`The checkout of order ${orderId} was taken over by another run`);
		this.name = "SagaTakenOverError";
	}
}
