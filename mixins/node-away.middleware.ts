/**
 * Calls to a service whose node is away for a moment: a rolling restart replaces each node in turn,
 * and with the embedded store a stateful group (products, orders, users) has exactly one node.
 *
 * 1. A call that found no node (ServiceNotFound, or ServiceNotAvailable: the node was leaving and
 *    refused it) never ran, so it is safe to send again: it waits up to `waitMs` for a node of the
 *    action and is sent once more. A restart then costs the caller a pause, not a failed checkout.
 * 2. If none comes back, the error leaves the call with code 503. Moleculer gives these errors code
 *    404 (a full queue 429), and the shop reads a 4xx from a call as a business refusal: a checkout
 *    stored "no node" as its Idempotency-Key's final answer and replayed that 503 to every retry, and
 *    a users call with no node read as "No such shipping address".
 *
 * 3. Only while the absence is young (LONG_GONE_MS): a service away longer than that (its group
 *    removed, or down for good) is not coming back within a wait, and every request waiting for it
 *    would hold its connection for nothing. Its calls fail at once, until a node of it is back.
 *
 * It wraps broker.call, so every ctx.call. The gateway's own routing resolves the endpoint itself
 * (moleculer-web's aliasHandler): services/api.service.ts waits there with waitForAction.
 */
import type { Middleware, ServiceBroker } from "moleculer";
import { BROKER_UNAVAILABLE_ERRORS } from "../lib/errors";

const NEVER_RAN = new Set(["ServiceNotFoundError", "ServiceNotAvailableError"]);
const POLL_MS = 50;

/** Whether a node of the action is there now. */
export function actionAvailable(broker: ServiceBroker, action: string): boolean {
	return !!(broker.registry as any).getActionEndpoints(action)?.hasAvailable();
}

/** How long an action may have had no node and still be waited for. Far longer than a node's restart. */
export const LONG_GONE_MS = 60_000;

/** Per broker: since when each action found without a node has had none. */
const absences = new WeakMap<ServiceBroker, Map<string, number>>();

function absencesOf(broker: ServiceBroker): Map<string, number> {
	let away = absences.get(broker);
	if (!away) {
		const known = (away = new Map<string, number>());
		absences.set(broker, known);
		// A node that comes back ends its absence, also when nobody was waiting for it then: a later
		// absence starts afresh.
		(broker as any).localBus?.on("$services.changed", () => {
			for (const action of [...known.keys()]) if (actionAvailable(broker, action)) known.delete(action);
		});
	}
	return away;
}

/** Waits up to `ms` for a node of the action; true once one is there. No wait once it has had none for `longGoneMs`. */
export async function waitForAction(broker: ServiceBroker, action: string, ms: number, longGoneMs = LONG_GONE_MS): Promise<boolean> {
	const away = absencesOf(broker);
	if (actionAvailable(broker, action)) {
		away.delete(action);
		return true;
	}
	const since = away.get(action) ?? Date.now();
	away.set(action, since);
	if (Date.now() - since >= longGoneMs) return false;
	const deadline = Date.now() + ms;
	while (Date.now() < deadline && !broker.stopping) {
		await new Promise((r) => setTimeout(r, POLL_MS));
		if (actionAvailable(broker, action)) {
			away.delete(action);
			return true;
		}
	}
	return false;
}

export function NodeAwayMiddleware(waitMs: number, longGoneMs = LONG_GONE_MS): Middleware {
	let broker: ServiceBroker;
	const waitForNode = (action: string, ms: number) => waitForAction(broker, action, ms, longGoneMs);

	return {
		name: "NodeAway",
		created(b: ServiceBroker) {
			broker = b;
		},
		call(next: (action: unknown, params?: unknown, opts?: any) => Promise<unknown> & { ctx?: unknown }) {
			return (action: unknown, params?: unknown, opts: any = {}) => {
				// moleculer reads `.ctx` off the returned promise (Context.call merges that context's meta into the
				// caller's): a call sent again hands over its own when it answers.
				const answer: Promise<unknown> & { ctx?: unknown } = next(action, params, opts).catch(async (first: any) => {
					let err = first;
					// Only when this call found no node (the error names this action): a service further down that had
					// none means this request ran, and sending it again would run it twice. And once per call: a wait
					// inside (the broker's retry calls through here too) is not repeated above it.
					// Alone (no transporter), a service that is not here never comes: nothing to wait for.
					const mayWait = waitMs > 0 && !!broker.transit && typeof action === "string" && !opts.nodeID && err && NEVER_RAN.has(err.name) && err.data?.action === action && !err.nodeAwayWaited;
					// Not longer than half the call's own timeout, and sent again with what is left of it: the answer
					// must still reach the caller in time.
					const timeout = opts.timeout ?? broker.options.requestTimeout ?? 0;
					const started = Date.now();
					if (mayWait && (await waitForNode(action, timeout > 0 ? Math.min(waitMs, timeout / 2) : waitMs))) {
						const again = next(action, params, timeout > 0 ? { ...opts, timeout: Math.max(1, timeout - (Date.now() - started)) } : opts);
						try {
							const result = await again;
							if (again.ctx) answer.ctx = again.ctx;
							return result;
						} catch (failed: any) {
							err = failed;
						}
					}
					if (err && typeof err === "object") {
						err.nodeAwayWaited = true;
						if (BROKER_UNAVAILABLE_ERRORS.has(err.name) && typeof err.code === "number" && err.code < 500) err.code = 503;
					}
					throw err;
				});
				return answer;
			};
		},
		// moleculer's typings give the `call` hook the type of a call, not of the wrapper it returns.
	} as unknown as Middleware;
}
