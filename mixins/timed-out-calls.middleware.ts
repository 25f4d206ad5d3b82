/**
 * A call to another node that timed out is let go of by the caller's context tracking too.
 *
 * Moleculer's Timeout middleware rejects such a call, and its ErrorHandler then drops the pending
 * request, so the promise the ContextTracker waits on inside them never settles: every later graceful
 * stop of the node waited the whole SHUTDOWN_TIMEOUT for calls answered (with a 503) long before, its
 * notice naming them, and the list grew by one per timeout for the life of the process. Registered
 * among the shop's own middlewares (inside the tracker), the call settles here shortly after its
 * timeout. Local calls are left alone: their handler still runs, and a stop waits for it.
 */
import { Errors, type Middleware } from "moleculer";

/** After the call's own timeout: it has answered by then (a timeout), so this only lets the tracker go. */
const GRACE_MS = 1000;

export function TimedOutCallsMiddleware(): Middleware {
	return {
		name: "TimedOutCalls",
		remoteAction(next: (ctx: any) => Promise<unknown>) {
			return (ctx: any) => {
				const call = next(ctx);
				const timeout = ctx.options?.timeout;
				if (!(typeof timeout === "number" && timeout > 0)) return call;
				let timer: NodeJS.Timeout | undefined;
				const expired = new Promise<never>((_resolve, reject) => {
					timer = setTimeout(() => reject(new Errors.RequestTimeoutError({ action: ctx.action?.name, nodeID: ctx.nodeID })), timeout + GRACE_MS);
					timer.unref();
				});
				return Promise.race([call, expired]).finally(() => clearTimeout(timer));
			};
		},
	} as Middleware;
}
