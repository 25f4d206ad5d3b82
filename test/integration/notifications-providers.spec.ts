/**
 * SendGrid and Twilio through their real SDKs (@sendgrid/mail, twilio), pointed by
 * SENDGRID_API_BASE / TWILIO_API_BASE at a local HTTP server that records what they send and
 * answers like the providers do: success, a transient 5xx, a permanent 4xx.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Context, ServiceSchema } from "moleculer";
import { startShop, type Shop } from "../helpers/shop";
import { OutboxMixin } from "../../mixins/outbox.mixin";
import { NotFoundError } from "../../lib/errors";
import NotificationsService from "../../services/notifications.service";
import { waitFor } from "../helpers/wait";
import { withEnv } from "../helpers/env";
import { fakeSession } from "../helpers/fakes";

const ACCOUNT_SID = "AC" + "0123456789abcdef".repeat(2);
const AUTH_TOKEN = "twilio-secret";

interface Recorded {
	method: string;
	url: string;
	headers: http.IncomingHttpHeaders;
	body: string;
	at: number;
}

type Reply = { status: number; body: unknown; headers?: Record<string, string> };

/** The providers' APIs, in one local server: replies are scripted per path prefix, requests recorded. */
class FakeProviders {
	requests: Recorded[] = [];
	private scripts = new Map<string, Reply[]>();
	private server = http.createServer((req, res) => {
		let body = "";
		req.on("data", (c) => (body += c));
		req.on("end", () => {
			this.requests.push({ method: req.method!, url: req.url!, headers: req.headers, body, at: Date.now() });
			const reply = this.next(req.url!, body);
			res.writeHead(reply.status, { "content-type": "application/json", ...reply.headers });
			res.end(reply.body == null ? "" : JSON.stringify(reply.body));
		});
	});
	url = "";

	async start() {
		await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
		this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
	}
	stop() {
		return new Promise<void>((resolve) => this.server.close(() => resolve()));
	}
	/** The next replies for requests whose path starts with `prefix` (then the default). */
	script(prefix: string, replies: Reply[]) {
		this.scripts.set(prefix, replies);
	}
	sendgrid() {
		return this.requests.filter((r) => r.url.startsWith("/v3/mail/send"));
	}
	twilio() {
		return this.requests.filter((r) => r.url.startsWith("/2010-04-01/"));
	}

	private next(url: string, body: string): Reply {
		for (const [prefix, replies] of this.scripts) if (url.startsWith(prefix) && replies.length) return replies.shift()!;
		if (url.startsWith("/v3/mail/send")) return { status: 202, body: null, headers: { "x-message-id": `sg-${this.sendgrid().length}` } };
		if (url.startsWith(`/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`)) {
			const form = new URLSearchParams(body);
			const sid = `SM${String(this.twilio().length).padStart(32, "0")}`;
			return { status: 201, body: { sid, account_sid: ACCOUNT_SID, to: form.get("To"), from: form.get("From"), body: form.get("Body"), status: "queued", num_segments: "1", date_created: new Date().toUTCString() } };
		}
		return { status: 404, body: { message: "not found" } };
	}
}

const users = new Map([
	["u-ann", { id: "u-ann", email: "ann@example.com", firstName: "Ann", phone: "+14155550100" }],
	["u-bob", { id: "u-bob", email: "bob@example.com", firstName: "Bob", phone: "+14155550199" }],
]);

const FakeUsers: ServiceSchema = {
	name: "users",
	mixins: [OutboxMixin("users")],
	actions: {
		checkSession: { params: { sid: "string" }, handler: (ctx: Context<{ sid: string }>) => fakeSession(ctx.params.sid) },
		get: {
			params: { id: "string" },
			handler(ctx: Context<{ id: string }>) {
				const u = users.get(ctx.params.id);
				if (!u) throw new NotFoundError("User");
				return { ...u, lastName: null, role: "customer", isVerified: true, createdAt: new Date() };
			},
		},
	},
};

const FakeOrders: ServiceSchema = {
	name: "orders",
	mixins: [OutboxMixin("orders")],
	actions: {
		announce: {
			params: { event: "string", payload: "object" },
			handler(ctx: Context<{ event: string; payload: Record<string, unknown> }>) {
				return this.publish(ctx, ctx.params.event, ctx.params.payload);
			},
		},
	},
};

function shipped(orderId: string, userId: string) {
	return { orderId, number: `SO-${orderId}`, userId, status: "shipped", from: "processing", to: "shipped", trackingNumber: "1Z999AA1", items: [], subtotal: 1_000, discount: 0, shipping: 0, total: 1_000, currency: "USD", promoCode: null, createdAt: new Date().toISOString() };
}


describe("notifications through SendGrid and Twilio (real SDKs, local provider server)", () => {
	const providers = new FakeProviders();
	let shop: Shop;
	let svc: any;

	beforeAll(async () => {
		await providers.start();
		// Metrics on (without a reporter): the attempts are counted for the operator's alert.
		shop = await startShop({ services: [FakeUsers, FakeOrders], noGateway: true, broker: { metrics: { enabled: true, reporter: [] } } });
		// The service reads its environment when it is created.
		const env: Record<string, string> = {
			SENDGRID_API_KEY: "SG.test-key",
			SENDGRID_API_BASE: providers.url,
			NOTIFY_FROM_EMAIL: "shop@example.com",
			TWILIO_ACCOUNT_SID: ACCOUNT_SID,
			TWILIO_AUTH_TOKEN: AUTH_TOKEN,
			TWILIO_FROM: "+15005550006",
			TWILIO_API_BASE: providers.url,
		};
		svc = withEnv(env, () =>
			shop.broker.createService({
				name: "notifications",
				mixins: [NotificationsService as unknown as Partial<ServiceSchema>],
				settings: { scanIntervalMs: 100, catchUpDelayMs: 50, backoff: { baseMs: 50, factor: 2, maxMs: 5_000, jitter: 0 } },
			}),
		);
		await shop.broker.waitForServices("notifications", 15_000);
	});
	afterAll(async () => {
		await shop.stop();
		await providers.stop();
	});

	const message = (template: string, channel: string, orderId: string) => svc.db.notifications.findOne({ template, channel, text: new RegExp(`SO-${orderId}\\b`) });

	test("an email goes to SendGrid's v3 mail API with the key, sender, recipient and both bodies", async () => {
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: shipped("o1", "u-ann") });
		const mail = await waitFor(() => message("order-shipped", "email", "o1"), (m: any) => m?.status === "sent");
		const [req] = providers.sendgrid();
		expect(req.method).toBe("POST");
		expect(req.headers.authorization).toBe("Bearer SG.test-key");
		const body = JSON.parse(req.body);
		expect(body.from).toEqual({ email: "shop@example.com" });
		expect(body.personalizations).toEqual([{ to: [{ email: "ann@example.com" }] }]);
		expect(body.subject).toBe("Order SO-o1 has shipped");
		expect(body.content.map((c: any) => c.type)).toEqual(["text/plain", "text/html"]);
		expect(body.content[0].value).toContain("Tracking number: 1Z999AA1");
		expect(body.custom_args).toEqual({ notificationId: mail.id });
		expect(mail).toMatchObject({ provider: "sendgrid", providerId: "sg-1", attempts: 1, error: null });
	});

	test("an SMS goes to Twilio's Messages API with basic auth and the form fields", async () => {
		const sms = await waitFor(() => message("order-shipped", "sms", "o1"), (m: any) => m?.status === "sent");
		const [req] = providers.twilio();
		expect(req.method).toBe("POST");
		expect(req.url).toBe(`/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`);
		expect(req.headers.authorization).toBe(`Basic ${Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString("base64")}`);
		expect(req.headers["content-type"]).toContain("application/x-www-form-urlencoded");
		const form = new URLSearchParams(req.body);
		expect(Object.fromEntries(form)).toEqual({ To: "+14155550100", From: "+15005550006", Body: "Moleculer Shop: order SO-o1 has shipped. Tracking: 1Z999AA1" });
		expect(sms).toMatchObject({ provider: "twilio", providerId: "SM00000000000000000000000000000001", attempts: 1 });
	});

	test("a 5xx from a provider is retried; a 4xx fails the message with the provider's reason", async () => {
		providers.script("/v3/mail/send", [{ status: 503, body: { errors: [{ message: "try later" }] } }]);
		providers.script("/2010-04-01/", [{ status: 400, body: { code: 21211, message: "The 'To' number +14155550199 is not a valid phone number.", more_info: "https://www.twilio.com/docs/errors/21211", status: 400 } }]);
		const before = providers.requests.length;
		const count = (name: string, channel: string, provider: string) => shop.broker.metrics.getMetric(name)?.get({ channel, provider })?.value ?? 0;
		const counted = () => [count("notification_sends_total", "email", "sendgrid"), count("notification_send_failures_total", "email", "sendgrid"), count("notification_send_failures_total", "sms", "twilio")];
		const countedBefore = counted();
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: shipped("o2", "u-bob") });

		const mail = await waitFor(() => message("order-shipped", "email", "o2"), (m: any) => m?.status === "sent");
		expect(mail.attempts).toBe(2);
		const sms = await waitFor(() => message("order-shipped", "sms", "o2"), (m: any) => m?.status === "failed");
		expect(sms.attempts).toBe(1);
		expect(sms.error).toMatch(/Twilio 400 error: .*not a valid phone number/);
		await new Promise((r) => setTimeout(r, 300));
		// Two mail attempts, one SMS attempt: a refused SMS is not hammered again.
		expect(providers.requests.length - before).toBe(3);
		// Counted by outcome, channel and provider (the ShopNotificationsFailing alert reads them).
		expect(counted().map((n, i) => n - countedBefore[i])).toEqual([1, 1, 1]);
	});

	test("a provider's reason with line breaks is kept on one line, in the record and in the log", async () => {
		const warn = jest.spyOn((shop.broker.getLocalService("notifications") as any).logger, "warn");
		providers.script("/v3/mail/send", [{ status: 400, body: { errors: [{ message: "line one\nline two:\r\n  forged log line", field: "from" }] } }]);
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: shipped("o9", "u-bob") });
		const mail = await waitFor(() => message("order-shipped", "email", "o9"), (m: any) => m?.status === "failed");
		const lines = warn.mock.calls.map((args) => String(args[0])).filter((l) => l.includes("line one"));
		warn.mockRestore();
		expect(mail.error).toBe("SendGrid 400 error: line one line two: forged log line");
		expect(lines).toEqual([expect.stringMatching(/failed after 1 attempt\(s\): SendGrid 400 error: line one line two: forged log line$/)]);
	});

	test("SendGrid's reason is kept when it refuses a message", async () => {
		providers.script("/v3/mail/send", [{ status: 400, body: { errors: [{ message: "The from address does not match a verified Sender Identity.", field: "from" }] } }]);
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: shipped("o3", "u-bob") });
		const mail = await waitFor(() => message("order-shipped", "email", "o3"), (m: any) => m?.status === "failed");
		expect(mail.error).toBe("SendGrid 400 error: The from address does not match a verified Sender Identity.");
	});

	test.each([
		["SendGrid", "/v3/mail/send", "email", { errors: [{ message: "too many requests" }] }],
		["Twilio", "/2010-04-01/", "sms", { code: 20429, message: "Too Many Requests", status: 429 }],
	])("%s's 429 with Retry-After: the next attempt waits for it, not for the shorter backoff", async (_name, prefix, channel, body) => {
		providers.script(prefix, [{ status: 429, body, headers: { "retry-after": "1" } }]);
		const orderId = `ra-${channel}`;
		await shop.broker.call("orders.announce", { event: "order.status_changed", payload: shipped(orderId, "u-ann") });
		const sent = await waitFor(() => message("order-shipped", channel, orderId), (m: any) => m?.status === "sent", 5_000);
		expect(sent.attempts).toBe(2);
		const tries = providers.requests.filter((r) => r.url.startsWith(prefix) && r.body.includes(`SO-${orderId}`));
		expect(tries).toHaveLength(2);
		// The backoff alone would have retried after 50 ms.
		expect(tries[1].at - tries[0].at).toBeGreaterThanOrEqual(1_000);
	});
});
