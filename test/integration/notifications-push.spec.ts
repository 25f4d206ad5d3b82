/**
 * Web Push: a customer's browser subscribes with the shop's VAPID key, and order news reaches it
 * through its push service, here a local HTTP server named by WEB_PUSH_HOSTS. The test holds the
 * browser's side: its P-256 key pair and auth secret decrypt what the shop sent (RFC 8291,
 * aes128gcm), and the shop's public key verifies the VAPID header's signature (RFC 8292).
 */
import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startShopWithAdmin, type Shop } from "../helpers/shop";
import { addToCart, checkout, createProduct, registerCustomer, type Customer } from "../helpers/flows";
import { waitFor } from "../helpers/wait";
import { withEnv } from "../helpers/env";
import { Collection } from "../../mixins/collection";

const ece: { decrypt(buffer: Buffer, params: Record<string, unknown>): Buffer } = require("http_ece");

const ADMIN = { email: "admin@push.test", password: "admin-password-push-1" };
const PASSWORD = "correct horse battery";

interface Received {
	path: string;
	headers: http.IncomingHttpHeaders;
	body: Buffer;
}

/** A push service: records what it is sent, answers 201 with the message's URL, or what a test scripts for a path. */
class FakePushService {
	received: Received[] = [];
	replies = new Map<string, number>();
	url = "";
	private server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			this.received.push({ path: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
			const status = this.replies.get(req.url!) ?? 201;
			res.writeHead(status, status === 201 ? { location: `${this.url}/messages/${this.received.length}` } : {});
			res.end();
		});
	});
	async start() {
		await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
		this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
	}
	stop() {
		return new Promise<void>((resolve) => this.server.close(() => resolve()));
	}
	to(path: string) {
		return this.received.filter((r) => r.path === path);
	}
}

/** A browser's side of a subscription: its key pair and auth secret, and what it gives the storefront. */
function browser(endpoint: string) {
	const ecdh = crypto.createECDH("prime256v1");
	ecdh.generateKeys();
	const auth = crypto.randomBytes(16);
	return {
		ecdh,
		auth,
		subscription: { endpoint, expirationTime: null, keys: { p256dh: ecdh.getPublicKey().toString("base64url"), auth: auth.toString("base64url") } },
		open: (body: Buffer) => JSON.parse(ece.decrypt(body, { version: "aes128gcm", privateKey: ecdh, authSecret: auth }).toString("utf8")),
	};
}

/** Checks the VAPID header (`vapid t=<JWT>, k=<key>`): signed ES256 by `publicKey`, for the push service's origin. */
function vapidClaims(header: string | undefined, publicKey: string): Record<string, any> {
	const m = /^vapid t=([^,]+), k=(.+)$/.exec(header ?? "");
	expect(m).not.toBeNull();
	expect(m![2]).toBe(publicKey);
	const [head, claims, signature] = m![1].split(".");
	expect(JSON.parse(Buffer.from(head, "base64url").toString())).toMatchObject({ typ: "JWT", alg: "ES256" });
	const raw = Buffer.from(publicKey, "base64url");
	const key = crypto.createPublicKey({ key: { kty: "EC", crv: "P-256", x: raw.subarray(1, 33).toString("base64url"), y: raw.subarray(33).toString("base64url") }, format: "jwk" });
	const valid = crypto.verify("sha256", Buffer.from(`${head}.${claims}`), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(signature, "base64url"));
	expect(valid).toBe(true);
	return JSON.parse(Buffer.from(claims, "base64url").toString());
}

describe("Web Push notifications", () => {
	const push = new FakePushService();
	let shop: Shop;
	let admin: string;
	let variantId: string;
	let publicKey: string;

	beforeAll(async () => {
		await push.start();
		({ adminToken: admin, ...shop } = await withEnv({ WEB_PUSH_HOSTS: `fcm.googleapis.com, ${push.url}`, STOREFRONT_URL: "https://shop.example.com" }, () => startShopWithAdmin(ADMIN)));
		({ variantId } = await createProduct(shop.http, admin, { price: 2500, stock: 50 }));
		publicKey = (await shop.http.get("/api/push/public-key")).body.publicKey;
	});
	afterAll(async () => {
		await shop?.stop();
		await push.stop();
	});

	const subscribe = (c: Customer, sub: unknown) => shop.http.post("/api/me/push-subscriptions", sub, { token: c.token });
	const pushMessages = (c: Customer) => shop.http.get("/api/me/notifications", { token: c.token }).then((r) => r.body.rows.filter((m: any) => m.channel === "push"));

	test("the shop's public key is a P-256 point anyone may fetch", () => {
		const raw = Buffer.from(publicKey, "base64url");
		expect(raw).toHaveLength(65);
		expect(raw[0]).toBe(4);
	});

	test("an order's confirmation reaches each subscribed browser, encrypted for it and signed with the shop's key", async () => {
		const c = await registerCustomer(shop.http);
		const laptop = browser(`${push.url}/push/laptop`);
		const phone = browser(`${push.url}/push/phone`);
		const first = await subscribe(c, laptop.subscription);
		expect(first.status).toBe(201);
		// Like every other create route; the list is where the subscription is read back.
		expect(first.headers.get("location")).toBe("/api/me/push-subscriptions");
		expect(first.body).toMatchObject({ id: expect.any(String), endpoint: laptop.subscription.endpoint, expirationTime: null });
		// The same browser again (keys renewed, say): the same subscription, updated.
		const again = await subscribe(c, laptop.subscription);
		expect(again.status).toBe(200);
		expect(again.body.id).toBe(first.body.id);
		expect((await subscribe(c, phone.subscription)).status).toBe(201);
		expect((await shop.http.get("/api/me/push-subscriptions", { token: c.token })).body.total).toBe(2);

		await addToCart(shop.http, c.token, variantId, 2);
		const order = await checkout(shop.http, c);
		expect(order.status).toBe(201);
		await waitFor(async () => push.to("/push/laptop").length + push.to("/push/phone").length, (n) => n === 2);

		const [sent] = push.to("/push/laptop");
		expect(sent.headers["content-encoding"]).toBe("aes128gcm");
		expect(sent.headers.ttl).toBe("86400");
		const claims = vapidClaims(sent.headers.authorization, publicKey);
		expect(claims.aud).toBe(push.url);
		expect(claims.sub).toBe("mailto:no-reply@example.com");
		expect(claims.exp * 1000).toBeGreaterThan(Date.now());
		const shown = laptop.open(sent.body);
		expect(shown).toEqual({
			title: `Order ${order.body.number} confirmed`,
			body: `Moleculer Shop: order ${order.body.number} is confirmed, total $50.00. Thank you!`,
			url: `https://shop.example.com/orders/${order.body.id}`,
			tag: expect.any(String),
		});
		// Each browser's copy is encrypted for that browser alone.
		expect(phone.open(push.to("/push/phone")[0].body)).toMatchObject({ title: shown.title });
		expect(() => phone.open(sent.body)).toThrow();

		const listed = await waitFor(() => pushMessages(c), (ms: any[]) => ms.length === 2 && ms.every((m) => m.status === "sent"));
		expect(listed.map((m: any) => m.recipient).sort()).toEqual([first.body.id, (await shop.http.get("/api/me/push-subscriptions", { token: c.token })).body.rows.find((s: any) => s.endpoint.endsWith("/phone")).id].sort());
		expect(listed.map((m: any) => m.id)).toContain(shown.tag);
		// The email went as before.
		expect((await shop.http.get("/api/me/notifications", { token: c.token })).body.rows.filter((m: any) => m.channel === "email" && m.template === "order-confirmed")).toHaveLength(1);
	});

	test("a subscription past the expirationTime its browser gave gets nothing; one given already past is refused", async () => {
		const c = await registerCustomer(shop.http);
		const soon = browser(`${push.url}/push/expiring`);
		expect((await subscribe(c, { ...soon.subscription, expirationTime: Date.now() + 300 })).status).toBe(201);
		expect((await subscribe(c, { ...browser(`${push.url}/push/expired-already`).subscription, expirationTime: Date.now() - 1 })).body.data).toEqual([expect.objectContaining({ field: "expirationTime" })]);
		await new Promise((r) => setTimeout(r, 400));
		await addToCart(shop.http, c.token, variantId, 1);
		expect((await checkout(shop.http, c)).status).toBe(201);
		await waitFor(() => shop.http.get("/api/me/notifications", { token: c.token }), (r) => r.body.rows.some((m: any) => m.template === "order-confirmed"));
		await new Promise((r) => setTimeout(r, 200));
		expect(await pushMessages(c)).toEqual([]);
		expect(push.to("/push/expiring")).toHaveLength(0);
	});

	test("a subscription its push service no longer knows (410) is dropped, and its message fails without retries", async () => {
		const c = await registerCustomer(shop.http);
		const old = browser(`${push.url}/push/expired`);
		expect((await subscribe(c, old.subscription)).status).toBe(201);
		push.replies.set("/push/expired", 410);
		await addToCart(shop.http, c.token, variantId, 1);
		expect((await checkout(shop.http, c)).status).toBe(201);

		const [failed] = await waitFor(() => pushMessages(c), (ms: any[]) => ms.length === 1 && ms[0].status === "failed");
		expect(failed.attempts).toBe(1);
		const { body: all } = await shop.http.get(`/api/notifications?userId=${c.userId}&channel=push`, { token: admin });
		expect(all.rows[0]).toMatchObject({ provider: "webpush", error: expect.stringContaining("410") });
		expect((await shop.http.get("/api/me/push-subscriptions", { token: c.token })).body.total).toBe(0);
		await new Promise((r) => setTimeout(r, 300));
		expect(push.to("/push/expired")).toHaveLength(1);
	});

	test("a browser another account signs in on is that account's now: the first one's news no longer goes to it", async () => {
		const ann = await registerCustomer(shop.http);
		const bob = await registerCustomer(shop.http);
		const shared = browser(`${push.url}/push/shared`);
		const annSub = await subscribe(ann, shared.subscription);
		const bobSub = await subscribe(bob, shared.subscription);
		expect(bobSub.body.id).toBe(annSub.body.id);
		expect((await shop.http.get("/api/me/push-subscriptions", { token: ann.token })).body.total).toBe(0);
		// Ann cannot remove Bob's subscription, nor see it.
		expect((await shop.http.request("DELETE", `/api/me/push-subscriptions/${annSub.body.id}`, { token: ann.token })).status).toBe(404);

		await addToCart(shop.http, ann.token, variantId, 1);
		expect((await checkout(shop.http, ann)).status).toBe(201);
		await waitFor(() => shop.http.get("/api/me/notifications", { token: ann.token }), (r) => r.body.rows.some((m: any) => m.channel === "email"));
		await new Promise((r) => setTimeout(r, 300));
		expect(push.to("/push/shared")).toHaveLength(0);
		expect(await pushMessages(ann)).toEqual([]);

		expect((await shop.http.request("DELETE", `/api/me/push-subscriptions/${bobSub.body.id}`, { token: bob.token })).status).toBe(204);
		expect((await shop.http.get("/api/me/push-subscriptions", { token: bob.token })).body.total).toBe(0);
	});

	test("an account keeps its newest 20 browsers: a 21st subscription retires the oldest", async () => {
		const c = await registerCustomer(shop.http);
		const ids: string[] = [];
		for (let i = 0; i < 21; i++) {
			ids.push((await subscribe(c, browser(`${push.url}/push/many-${i}`).subscription)).body.id);
			// Newest by time: two in one millisecond would be a tie.
			await new Promise((r) => setTimeout(r, 2));
		}
		const { body } = await shop.http.get("/api/me/push-subscriptions?pageSize=50", { token: c.token });
		expect(body.total).toBe(20);
		expect(body.rows.map((s: any) => s.id).sort()).toEqual(ids.slice(1).sort());
		// Renewing the oldest left makes it the newest: the next one retires another.
		expect((await subscribe(c, browser(`${push.url}/push/many-1`).subscription)).body.id).toBe(ids[1]);
		await new Promise((r) => setTimeout(r, 2));
		await subscribe(c, browser(`${push.url}/push/many-21`).subscription);
		const after = (await shop.http.get("/api/me/push-subscriptions?pageSize=50", { token: c.token })).body.rows.map((s: any) => s.id);
		expect(after).toContain(ids[1]);
		expect(after).not.toContain(ids[2]);
	});

	test("a subscription is refused, naming the field, when its push service or keys are not a browser's", async () => {
		const c = await registerCustomer(shop.http);
		const good = browser(`${push.url}/push/checked`).subscription;
		const refused = async (body: unknown, field: string) => {
			const res = await subscribe(c, body);
			expect(res.status).toBe(422);
			expect(res.body.data).toEqual([expect.objectContaining({ field })]);
		};
		// The shop would POST wherever a subscription points: only push services are taken.
		await refused({ ...good, endpoint: "https://internal.example.com/admin" }, "endpoint");
		await refused({ ...good, endpoint: "http://127.0.0.1:1/push" }, "endpoint");
		await refused({ ...good, endpoint: "https://fcm.googleapis.com.evil.example/push" }, "endpoint");
		await refused({ ...good, endpoint: "not a url" }, "endpoint");
		await refused({ ...good, endpoint: "https://fcm.googleapis.com:8443/fcm/send/x" }, "endpoint");
		await refused({ ...good, keys: { ...good.keys, p256dh: Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 9)]).toString("base64url") } }, "keys.p256dh");
		await refused({ ...good, keys: { ...good.keys, p256dh: Buffer.alloc(65, 4).subarray(0, 33).toString("base64url") } }, "keys.p256dh");
		await refused({ ...good, keys: { ...good.keys, auth: "c2hvcnQ" } }, "keys.auth");
		await refused({ endpoint: good.endpoint }, "keys");
		expect((await shop.http.get("/api/me/push-subscriptions", { token: c.token })).body.total).toBe(0);
		// Spellings of one endpoint are one browser's subscription, kept in canonical form.
		const one = await subscribe(c, { ...good, endpoint: `${push.url.toUpperCase()}/push/./canonical#x` });
		expect(one.body.endpoint).toBe(`${push.url}/push/canonical`);
		const same = await subscribe(c, { ...good, endpoint: `${push.url}/push/canonical` });
		expect({ status: same.status, id: same.body.id }).toEqual({ status: 200, id: one.body.id });
		expect((await shop.http.request("DELETE", `/api/me/push-subscriptions/${one.body.id}`, { token: c.token })).status).toBe(204);
		// Any host under an allowed one is a push service's (FCM's endpoints are on fcm.googleapis.com).
		expect((await subscribe(c, { ...good, endpoint: "https://fcm.googleapis.com/fcm/send/abc:def" })).status).toBe(201);
		expect((await shop.http.post("/api/me/push-subscriptions", good)).status).toBe(401);
	});

	test("an erased account's subscriptions go with it, and the embedded file is rewritten without them", async () => {
		const subs = (shop.broker.getLocalService("notifications") as any).db.notification_push_subscriptions;
		const erase = async (c: Customer) => {
			const compacted = jest.spyOn(Collection.prototype, "compact");
			try {
				expect((await shop.http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } })).status).toBe(204);
				await waitFor(() => subs.count({ userId: c.userId }), (n) => n === 0);
				// Nor does the file keep the old lines until its next rewrite.
				await waitFor(async () => compacted.mock.contexts.map((ctx) => (ctx as Collection).name), (names) => names.includes("notification_push_subscriptions"));
			} finally {
				compacted.mockRestore();
			}
		};
		const subscribed = await registerCustomer(shop.http);
		expect((await subscribe(subscribed, browser(`${push.url}/push/leaving`).subscription)).status).toBe(201);
		expect(await subs.count({ userId: subscribed.userId })).toBe(1);
		await erase(subscribed);
		// One that unsubscribed before (as a storefront does at sign-out) has none left, but its lines are in the file.
		const signedOut = await registerCustomer(shop.http);
		const earlier = await subscribe(signedOut, browser(`${push.url}/push/left-before`).subscription);
		expect((await shop.http.request("DELETE", `/api/me/push-subscriptions/${earlier.body.id}`, { token: signedOut.token })).status).toBe(204);
		await erase(signedOut);
	});
});
