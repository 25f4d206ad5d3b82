/**
 * When an interrupted checkout may be finished by whoever finds it. A checkout records the node (and
 * that node's run, its instance id) that runs its saga; once that run is known to be over, the
 * checkout is finished at once instead of after the stale window, which exists only for checkouts
 * whose runner nobody can vouch for. One whose undoing failed (a service it needed was down) is
 * retried every little while: nobody runs it any more.
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
	/** A checkout whose undoing failed is tried again after this long. */
	compensationRetryMs: number;
}

export interface InterruptedCheckout {
	saga: { state: string; runner?: SagaRunner | null };
	updatedAt: Date | string;
}

/** Whether the run that drove this saga is over: this node restarted, or the runner's node did or is gone. */
export function runnerIsGone(runner: SagaRunner | null | undefined, view: Pick<RecoveryView, "self" | "nodeOf" | "discoverySettled">): boolean {
	if (!runner) return false;
	if (runner.nodeID === view.self.nodeID) return runner.instanceID !== view.self.instanceID;
	const node = view.nodeOf(runner.nodeID);
	if (node && node.instanceID !== runner.instanceID) return true;
	if (!node || !node.available) return view.discoverySettled;
	return false;
}

export function checkoutRecoveryDue(order: InterruptedCheckout, now: Date, view: RecoveryView): boolean {
	const idleMs = now.getTime() - new Date(order.updatedAt).getTime();
	if (order.saga.state === "compensation_failed") return idleMs >= view.compensationRetryMs;
	if (order.saga.state !== "running") return false;
	return idleMs >= view.staleMs || runnerIsGone(order.saga.runner, view);
}
