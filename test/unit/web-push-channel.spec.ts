/** The Web Push channel against a local push service: what it makes of each answer. */
import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { generateVAPIDKeys } from "web-push";
import { WebPushChannel } from "../../adapters/channels/web-push-channel";
import { SubscriptionGoneError } from "../../adapters/channels/notification-channel";
import { DeliveryError } from "../../adapters/channels";

describe("WebPushChannel", () => {
	const hits: string[] = [];
	let reply: { status: number; headers?: Record<string, string>; delayMs?: number } = { status: 201 };
	const server = http.createServer((req, res) => {
		hits.push(req.url!);
		req.resume();
		req.on("end", () => {
			const { status, headers, delayMs } = reply;
			setTimeout(() => {
				res.writeHead(status, headers ?? {});
				res.end();
			}, delayMs ?? 0);
		});
	});
	let base = "";
	const channel = new WebPushChannel({ ...generateVAPIDKeys(), subject: "mailto:shop@example.com", timeoutMs: 2_000 });
	const browser = crypto.createECDH("prime256v1");
	browser.generateKeys();
	const keys = { p256dh: browser.getPublicKey().toString("base64url"), auth: crypto.randomBytes(16).toString("base64url") };
	const send = (path: string, k = keys) => channel.send({ id: "m1", to: `${base}${path}`, subject: "Order SO-1 confirmed", text: "Shop: order SO-1 is confirmed", push: { endpoint: `${base}${path}`, keys: k } });

	beforeAll(async () => {
		await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
		base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
	});
	afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
	beforeEach(() => {
		hits.length = 0;
		reply = { status: 201 };
	});

	test("201: sent, with the push service's message URL as the provider id", async () => {
		reply = { status: 201, headers: { location: `${base}/messages/7` } };
		await expect(send("/push/a")).resolves.toEqual({ status: "sent", provider: "webpush", providerId: `${base}/messages/7` });
	});

	test.each([404, 410])("%d: the subscription is gone, for good", async (status) => {
		reply = { status };
		const err = await send("/push/a").catch((e) => e);
		expect(err).toBeInstanceOf(SubscriptionGoneError);
		expect(err.permanent).toBe(true);
	});

	test.each([[429, false], [503, false], [400, true], [403, true]])("%d: permanent %s", async (status, permanent) => {
		reply = { status };
		const err = await send("/push/a").catch((e) => e);
		expect(err).toBeInstanceOf(DeliveryError);
		expect(err).not.toBeInstanceOf(SubscriptionGoneError);
		expect(err.permanent).toBe(permanent);
	});

	test("a redirect is not followed, and not retried", async () => {
		reply = { status: 307, headers: { location: `${base}/elsewhere` } };
		const err = await send("/push/a").catch((e) => e);
		expect(err).toBeInstanceOf(DeliveryError);
		expect(err.permanent).toBe(true);
		expect(hits).toEqual(["/push/a"]);
	});

	test("keys that cannot encrypt: the subscription is gone for good, and nothing is sent", async () => {
		const offCurve = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 9)]).toString("base64url");
		const err = await send("/push/a", { ...keys, p256dh: offCurve }).catch((e) => e);
		expect(err).toBeInstanceOf(SubscriptionGoneError);
		expect(err.permanent).toBe(true);
		expect(hits).toEqual([]);
	});

	test.each([
		["120", 120_000],
		[undefined, undefined],
	])("429 with Retry-After %j: the wait the push service asked for goes with the error", async (header, ms) => {
		reply = { status: 429, headers: header ? { "retry-after": header } : {} };
		const err = await send("/push/a").catch((e) => e);
		expect(err).toBeInstanceOf(DeliveryError);
		expect(err.retryAfterMs).toBe(ms);
	});

	test("a send given a longer timeout waits for a slow push service that a usual one gives up on", async () => {
		const slow = new WebPushChannel({ ...generateVAPIDKeys(), subject: "mailto:shop@example.com", timeoutMs: 100 });
		const message = { id: "m2", to: `${base}/push/slow`, subject: "s", text: "t", push: { endpoint: `${base}/push/slow`, keys } };
		reply = { status: 201, delayMs: 300 };
		const err = await slow.send(message).catch((e) => e);
		expect(err).toBeInstanceOf(DeliveryError);
		expect(err.status).toBeUndefined();
		await expect(slow.send(message, { timeoutMs: 2_000 })).resolves.toMatchObject({ status: "sent" });
	});
});
