/**
 * Push to the shop's apps through Firebase Cloud Messaging (HTTP v1): an app registers its FCM token,
 * and order news reaches it through FCM, here a local server playing both Google's token endpoint
 * (named by the service account's `token_uri`) and the FCM API (FCM_API_BASE). The test holds the
 * service account's key pair: the shop's sign-in JWT must verify with its public key.
 */
import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startShopWithAdmin, type Shop } from "../helpers/shop";
import { addToCart, checkout, createProduct, registerCustomer, type Customer } from "../helpers/flows";
import { waitFor } from "../helpers/wait";
import { withEnv } from "../helpers/env";
import { FCM_SCOPE } from "../../lib/fcm";

const ADMIN = { email: "admin@app-push.test", password: "admin-password-app-1" };
const PASSWORD = "correct horse battery";
const PROJECT = "shop-app-test";

interface Sent {
	authorization: string | undefined;
	message: Record<string, any>;
}

/** Google's token endpoint and FCM's messages:send: records sign-ins and messages, answers what a test scripts per token. */
class FakeFcm {
	signIns: Array<Record<string, string>> = [];
	sent: Sent[] = [];
	/** Per device token: the status and body FCM answers. */
	replies = new Map<string, { status: number; body: unknown }>();
	/** The access tokens handed out; a test may revoke them. */
	revoked = new Set<string>();
	url = "";
	/** Access tokens handed out so far (`access-1` ... `access-<issued>`). */
	issued = 0;
	private server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			const text = Buffer.concat(chunks).toString();
			const answer = (status: number, body: unknown) => {
				res.writeHead(status, { "content-type": "application/json" });
				res.end(JSON.stringify(body));
			};
			if (req.url === "/token") {
				this.signIns.push(Object.fromEntries(new URLSearchParams(text)));
				return answer(200, { access_token: `access-${++this.issued}`, expires_in: 3599, token_type: "Bearer" });
			}
			if (req.url === `/v1/projects/${PROJECT}/messages:send`) {
				const bearer = req.headers.authorization?.replace(/^Bearer /, "");
				if (!bearer || this.revoked.has(bearer)) return answer(401, { error: { code: 401, message: "Request had invalid authentication credentials.", status: "UNAUTHENTICATED" } });
				const { message } = JSON.parse(text);
				this.sent.push({ authorization: req.headers.authorization, message });
				const reply = this.replies.get(message.token);
				if (reply) return answer(reply.status, reply.body);
				return answer(200, { name: `projects/${PROJECT}/messages/${this.sent.length}` });
			}
			answer(404, { error: { code: 404, message: `no route ${req.url}` } });
		});
	});
	async start() {
		await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
		this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
	}
	stop() {
		return new Promise<void>((resolve) => this.server.close(() => resolve()));
	}
	to(token: string) {
		return this.sent.filter((s) => s.message.token === token);
	}
}

const unregistered = { status: 404, body: { error: { code: 404, message: "Requested entity was not found.", status: "NOT_FOUND", details: [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "UNREGISTERED" }] } } };
const unavailable = { status: 503, body: { error: { code: 503, message: "The service is currently unavailable.", status: "UNAVAILABLE", details: [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "UNAVAILABLE" }] } } };

const token = (name: string) => `${name}:APA91b${crypto.randomBytes(60).toString("base64url")}`;

describe("app push through FCM", () => {
	const fcm = new FakeFcm();
	const { publicKey, privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
	let shop: Shop;
	let admin: string;
	let variantId: string;

	beforeAll(async () => {
		await fcm.start();
		const account = { type: "service_account", project_id: PROJECT, client_email: "shop@shop-app-test.iam.gserviceaccount.com", private_key: privateKey.export({ type: "pkcs8", format: "pem" }), token_uri: `${fcm.url}/token` };
		({ adminToken: admin, ...shop } = await withEnv({ FCM_SERVICE_ACCOUNT: JSON.stringify(account), FCM_API_BASE: fcm.url, STOREFRONT_URL: "https://shop.example.com" }, () => startShopWithAdmin(ADMIN)));
		({ variantId } = await createProduct(shop.http, admin, { price: 2500, stock: 50 }));
	});
	afterAll(async () => {
		await shop?.stop();
		await fcm.stop();
	});

	const register = (c: Customer, body: unknown) => shop.http.post("/api/me/push-devices", body, { token: c.token });
	const devices = (c: Customer) => shop.http.get("/api/me/push-devices", { token: c.token }).then((r) => r.body);
	const pushMessages = (c: Customer) => shop.http.get("/api/me/notifications", { token: c.token }).then((r) => r.body.rows.filter((m: any) => m.channel === "push"));
	const buy = async (c: Customer) => {
		await addToCart(shop.http, c.token, variantId, 2);
		const order = await checkout(shop.http, c);
		expect(order.status).toBe(201);
		return order;
	};

	test("an order's confirmation reaches each of the customer's phones, sent with an access token the service account signed for", async () => {
		const c = await registerCustomer(shop.http);
		const pixel = token("pixel");
		const iphone = token("iphone");
		const first = await register(c, { token: pixel, platform: "android" });
		expect(first.status).toBe(201);
		// Like every other create route; the list is where the device is read back.
		expect(first.headers.get("location")).toBe("/api/me/push-devices");
		expect(first.body).toEqual({ id: expect.any(String), token: pixel, platform: "android", createdAt: expect.any(String), updatedAt: expect.any(String) });
		// The app registers at each start: the same device, updated.
		// Without its platform, the one registered before stays.
		const again = await register(c, { token: pixel });
		expect({ status: again.status, id: again.body.id, platform: again.body.platform }).toEqual({ status: 200, id: first.body.id, platform: "android" });
		expect((await register(c, { token: iphone, platform: "ios" })).status).toBe(201);
		expect((await devices(c)).total).toBe(2);

		const signInsBefore = fcm.signIns.length;
		const order = await buy(c);
		await waitFor(async () => fcm.to(pixel).length + fcm.to(iphone).length, (n) => n === 2);
		const [sent] = fcm.to(pixel);
		expect(sent.message).toEqual({
			token: pixel,
			notification: { title: `Order ${order.body.number} confirmed`, body: `Moleculer Shop: order ${order.body.number} is confirmed, total $50.00. Thank you!` },
			data: { notificationId: expect.any(String), url: `https://shop.example.com/orders/${order.body.id}` },
			android: { ttl: "86400s", notification: { tag: sent.message.data.notificationId } },
			apns: { headers: { "apns-expiration": expect.stringMatching(/^\d+$/), "apns-collapse-id": sent.message.data.notificationId } },
		});
		// The sign-in: a JWT bearer grant, RS256 by the service account's key, for FCM's scope.
		expect(fcm.signIns.length - signInsBefore).toBeLessThanOrEqual(1);
		const grant = fcm.signIns.at(-1)!;
		expect(grant.grant_type).toBe("urn:ietf:params:oauth:grant-type:jwt-bearer");
		const [head, claims, signature] = grant.assertion.split(".");
		expect(JSON.parse(Buffer.from(head, "base64url").toString())).toEqual({ alg: "RS256", typ: "JWT" });
		expect(crypto.verify("sha256", Buffer.from(`${head}.${claims}`), publicKey, Buffer.from(signature, "base64url"))).toBe(true);
		const claimed = JSON.parse(Buffer.from(claims, "base64url").toString());
		expect(claimed).toMatchObject({ iss: "shop@shop-app-test.iam.gserviceaccount.com", scope: FCM_SCOPE, aud: `${fcm.url}/token` });
		expect(claimed.exp - claimed.iat).toBe(3600);
		expect(sent.authorization).toMatch(/^Bearer access-\d+$/);

		const listed = await waitFor(() => pushMessages(c), (ms: any[]) => ms.length === 2 && ms.every((m) => m.status === "sent"));
		expect(listed.map((m: any) => m.id)).toContain(sent.message.data.notificationId);
		const { body: all } = await shop.http.get(`/api/notifications?userId=${c.userId}&channel=push`, { token: admin });
		expect(all.rows.map((m: any) => m.provider)).toEqual(["fcm", "fcm"]);
		expect(all.rows.map((m: any) => m.providerId).sort()).toEqual(fcm.sent.filter((s) => [pixel, iphone].includes(s.message.token)).map((s) => `projects/${PROJECT}/messages/${fcm.sent.indexOf(s) + 1}`).sort());

		// The next order's messages go with the same access token: no sign-in per message.
		const signIns = fcm.signIns.length;
		await buy(c);
		await waitFor(async () => fcm.to(pixel).length, (n) => n === 2);
		expect(fcm.signIns.length).toBe(signIns);
	});

	test("a revoked access token: the shop signs in again and the message goes", async () => {
		const c = await registerCustomer(shop.http);
		const phone = token("revoked");
		expect((await register(c, { token: phone })).status).toBe(201);
		// Every token handed out so far, the one the shop holds among them.
		for (let i = 1; i <= fcm.issued; i++) fcm.revoked.add(`access-${i}`);
		const signIns = fcm.signIns.length;
		await buy(c);
		await waitFor(async () => fcm.to(phone).length, (n) => n === 1);
		expect(fcm.signIns.length).toBe(signIns + 1);
		expect(fcm.to(phone)[0].authorization).toBe(`Bearer access-${fcm.issued}`);
		await waitFor(() => pushMessages(c), (ms: any[]) => ms.length === 1 && ms[0].status === "sent");
	});

	test("a token FCM no longer knows (UNREGISTERED) drops the device, and its message fails without retries", async () => {
		const c = await registerCustomer(shop.http);
		const gone = token("uninstalled");
		expect((await register(c, { token: gone })).status).toBe(201);
		fcm.replies.set(gone, unregistered);
		await buy(c);
		const [failed] = await waitFor(() => pushMessages(c), (ms: any[]) => ms.length === 1 && ms[0].status === "failed");
		expect(failed.attempts).toBe(1);
		const { body: all } = await shop.http.get(`/api/notifications?userId=${c.userId}&channel=push`, { token: admin });
		expect(all.rows[0]).toMatchObject({ provider: "fcm", error: expect.stringContaining("UNREGISTERED") });
		expect((await devices(c)).total).toBe(0);
		await new Promise((r) => setTimeout(r, 300));
		expect(fcm.to(gone)).toHaveLength(1);
	});

	test("FCM unavailable: the message stays queued for another attempt, and the device is kept", async () => {
		const c = await registerCustomer(shop.http);
		const busy = token("busy");
		expect((await register(c, { token: busy })).status).toBe(201);
		fcm.replies.set(busy, unavailable);
		await buy(c);
		await waitFor(async () => fcm.to(busy).length, (n) => n >= 1);
		const { body: all } = await waitFor(
			() => shop.http.get(`/api/notifications?userId=${c.userId}&channel=push`, { token: admin }),
			(r) => r.body.rows[0]?.error != null,
		);
		expect(all.rows[0]).toMatchObject({ status: "queued", provider: "fcm", error: expect.stringContaining("503") });
		expect((await devices(c)).total).toBe(1);
	});

	test("a phone another account signs in on is that account's now; another account's device answers 404", async () => {
		const ann = await registerCustomer(shop.http);
		const bob = await registerCustomer(shop.http);
		const shared = token("shared");
		const annDevice = await register(ann, { token: shared, platform: "ios" });
		const bobDevice = await register(bob, { token: shared, platform: "ios" });
		expect(bobDevice.body.id).toBe(annDevice.body.id);
		expect((await devices(ann)).total).toBe(0);
		expect((await shop.http.request("DELETE", `/api/me/push-devices/${annDevice.body.id}`, { token: ann.token })).status).toBe(404);

		await buy(ann);
		await waitFor(() => shop.http.get("/api/me/notifications", { token: ann.token }), (r) => r.body.rows.some((m: any) => m.channel === "email"));
		await new Promise((r) => setTimeout(r, 300));
		expect(fcm.to(shared)).toHaveLength(0);

		expect((await shop.http.request("DELETE", `/api/me/push-devices/${bobDevice.body.id}`, { token: bob.token })).status).toBe(204);
		expect((await devices(bob)).total).toBe(0);
	});

	test("a registration is refused, naming the field, unless it is an FCM token; a guest's is 401", async () => {
		const c = await registerCustomer(shop.http);
		for (const [body, field] of [
			[{}, "token"],
			[{ token: "" }, "token"],
			[{ token: "not a token" }, "token"],
			[{ token: "x".repeat(4097) }, "token"],
			[{ token: token("ok"), platform: "windows" }, "platform"],
		] as const) {
			const res = await register(c, body);
			expect({ body, status: res.status, fields: [...new Set(res.body.data?.map((d: any) => d.field))] }).toEqual({ body, status: 422, fields: [field] });
		}
		expect((await devices(c)).total).toBe(0);
		expect((await shop.http.post("/api/me/push-devices", { token: token("guest") })).status).toBe(401);
		expect((await shop.http.get("/api/me/push-devices")).status).toBe(401);
	});

	test("an erased account's devices go with it", async () => {
		const c = await registerCustomer(shop.http);
		expect((await register(c, { token: token("leaving") })).status).toBe(201);
		const stored = (shop.broker.getLocalService("notifications") as any).db.notification_push_devices;
		expect(await stored.count({ userId: c.userId })).toBe(1);
		expect((await shop.http.request("POST", "/api/me/delete", { token: c.token, body: { password: PASSWORD } })).status).toBe(204);
		await waitFor(() => stored.count({ userId: c.userId }), (n) => n === 0);
	});
});

describe("app push without FCM (the embedded default)", () => {
	let shop: Shop;
	let admin: string;

	beforeAll(async () => {
		({ adminToken: admin, ...shop } = await startShopWithAdmin(ADMIN));
	});
	afterAll(() => shop?.stop());

	test("a device's messages are stored in the outbox, as email and SMS are without their providers", async () => {
		const c = await registerCustomer(shop.http);
		expect((await shop.http.post("/api/me/push-devices", { token: token("outboxed"), platform: "android" }, { token: c.token })).status).toBe(201);
		const { variantId } = await createProduct(shop.http, admin, { price: 1000, stock: 5 });
		await addToCart(shop.http, c.token, variantId, 1);
		expect((await checkout(shop.http, c)).status).toBe(201);
		const { body } = await waitFor(
			() => shop.http.get(`/api/notifications?userId=${c.userId}&channel=push`, { token: admin }),
			(r) => r.body.rows.length === 1,
		);
		expect(body.rows[0]).toMatchObject({ status: "outboxed", provider: "outbox", template: "order-confirmed", recipient: expect.stringMatching(/^device:/) });
	});
});
