/**
 * Closing a listening socket makes the kernel reset every connection it has completed but the process
 * has not accepted yet: a client that connected a moment before (a load balancer still sending as the
 * pod leaves its endpoints, a loop kept busy by a burst) gets ECONNRESET instead of an answer. Node
 * accepts only one or two waiting connections per turn of the event loop, so the listener stays open
 * until a turn accepts none (the queue was empty), or `maxMs` has passed.
 */
import net from "node:net";

/** Settles after the event loop has polled for I/O at least once more, whichever phase it is called from. */
function afterNextPoll(): Promise<void> {
	return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

/**
 * Stops listening once no connection waits to be accepted; the connections accepted until then are the
 * server's like any other. Settles when the server has closed: as net.Server#close, once its connections
 * have ended too (http.Server#close would also drop the idle ones, which is not wanted here).
 */
export async function closeListener(server: net.Server, maxMs: number): Promise<void> {
	const start = Date.now();
	let accepted = 0;
	const count = () => accepted++;
	server.on("connection", count);
	try {
		for (;;) {
			const before = accepted;
			await afterNextPoll();
			if (accepted === before || Date.now() - start >= maxMs) break;
		}
	} finally {
		server.off("connection", count);
	}
	await new Promise<void>((resolve) => net.Server.prototype.close.call(server, () => resolve()));
}
