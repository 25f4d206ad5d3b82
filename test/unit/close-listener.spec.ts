/** Closing a listener without resetting the connections waiting in its queue (lib/close-listener.ts). */
import http from "node:http";
import net from "node:net";
import { closeListener } from "../../lib/close-listener";

let server: http.Server;
let port: number;

beforeEach(async () => {
	server = http.createServer((_req, res) => {
		res.setHeader("Connection", "close");
		res.end("ok");
	});
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	port = (server.address() as net.AddressInfo).port;
});

afterEach(() => {
	server.closeAllConnections();
	if (server.listening) server.close();
});

/** A raw request: what came back, and the socket's error code, once it has closed. */
function request(): Promise<{ received: string; error?: string }> {
	const socket = net.connect(port, "127.0.0.1");
	let received = "";
	let error: string | undefined;
	socket.on("data", (d: Buffer) => (received += d.toString()));
	socket.on("error", (err: NodeJS.ErrnoException) => (error = err.code));
	socket.write("GET / HTTP/1.1\r\nHost: test\r\n\r\n");
	return new Promise((resolve) => socket.on("close", () => resolve({ received, error })));
}

const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

test("every connection already waiting in the queue is accepted and answered; a later one is refused", async () => {
	const waiting = Array.from({ length: 20 }, request);
	// The connects are made on the next tick; the handshakes then complete in the kernel, and the connections
	// wait for the loop to accept them.
	await nextTick();
	const closed = closeListener(server, 5000);
	const results = await Promise.all(waiting);
	// Closing in this turn (net.Server#close) resets all of them, or all but one or two.
	for (const r of results) expect(r).toEqual({ received: expect.stringMatching(/^HTTP\/1\.1 200 /), error: undefined });
	await closed;
	expect(server.listening).toBe(false);
	expect(await request()).toMatchObject({ received: "", error: "ECONNREFUSED" });
});

test("with nothing waiting, it closes after one look for I/O", async () => {
	const closed = closeListener(server, 5000);
	expect(server.listening).toBe(true);
	await new Promise((r) => setImmediate(() => setImmediate(() => setImmediate(r))));
	expect(server.listening).toBe(false);
	await closed;
});

test("connections that keep arriving hold it open for maxMs at most", async () => {
	let arriving = true;
	const answers: Promise<{ received: string; error?: string }>[] = [];
	const keepConnecting = () => {
		if (!arriving) return;
		answers.push(request());
		setImmediate(keepConnecting);
	};
	keepConnecting();
	const start = Date.now();
	await closeListener(server, 200).finally(() => (arriving = false));
	expect(Date.now() - start).toBeGreaterThanOrEqual(200);
	const results = await Promise.all(answers);
	// Accepted ones were answered; the few that came after the close were refused or reset, not left hanging.
	expect(results.filter((r) => r.received.startsWith("HTTP/1.1 200 ")).length).toBeGreaterThan(0);
	for (const r of results) if (!r.received) expect(["ECONNREFUSED", "ECONNRESET"]).toContain(r.error);
});

test("settles once the connections it accepted have ended, as net.Server#close does", async () => {
	const idle = net.connect(port, "127.0.0.1");
	await new Promise((r) => idle.once("connect", r));
	let settled = false;
	const closed = closeListener(server, 5000).then(() => (settled = true));
	await new Promise((r) => setTimeout(r, 50));
	expect(server.listening).toBe(false);
	expect(settled).toBe(false);
	idle.destroy();
	await closed;
	expect(settled).toBe(true);
});
