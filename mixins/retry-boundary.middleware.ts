/**
 * Retries happen once, at the call that failed, never again at every level above it.
 *
 * The broker's retry policy wraps every action call. A retryable error (timeout, node gone, 503)
 * raised deep in a chain would otherwise be retried by each caller on the way up — the gateway
 * re-running a whole checkout, a refund repeated 4×4×4 times. Errors that leave an action handler
 * are therefore marked not retryable: a caller still retries when *its* call fails (the node it
 * called died or timed out, raised on the caller's side), but not when the callee reports that
 * something further down failed. Registered first, so it sits inside the broker's own retry.
 */
import type { Middleware } from "moleculer";

export function RetryBoundaryMiddleware(): Middleware {
	return {
		name: "RetryBoundary",
		localAction(next: (ctx: any) => Promise<unknown>) {
			return (ctx: any) =>
				next(ctx).catch((err: any) => {
					if (err && err.retryable) err.retryable = false;
					throw err;
				});
		},
	} as Middleware;
}
