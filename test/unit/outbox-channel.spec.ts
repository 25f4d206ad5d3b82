import { OutboxChannel, createChannels, readNotificationConfig } from "../../adapters/channels";

const message = { id: "m1", to: "ann@example.com", subject: "Verify your email", text: "Hello Ann,\nconfirm here: http://localhost:3000/verify-email?token=abc123\nThanks" };

describe("OutboxChannel", () => {
	test("stores nothing outside and says so: outboxed, no provider id", async () => {
		expect(await new OutboxChannel("email").send(message)).toEqual({ status: "outboxed", provider: "outbox", providerId: null });
	});

	test("in development the log carries the whole message, link included", async () => {
		const lines: string[] = [];
		await new OutboxChannel("email", (l) => lines.push(l), true).send(message);
		expect(lines).toHaveLength(1);
		expect(lines[0]).toContain("to ann@example.com");
		expect(lines[0]).toContain("Verify your email");
		expect(lines[0]).toContain("http://localhost:3000/verify-email?token=abc123");
	});

	test("otherwise only who it went to and the subject: no one-time link in the log", async () => {
		const lines: string[] = [];
		await new OutboxChannel("email", (l) => lines.push(l)).send(message);
		expect(lines).toEqual(["Outboxed email m1 to ann@example.com: Verify your email"]);
		await new OutboxChannel("sms", (l) => lines.push(l)).send({ id: "m2", to: "+15550100", text: "Order SH-1 shipped, tracking TRK123 and more words than sixty characters in all" });
		expect(lines[1]).toBe("Outboxed sms m2 to +15550100: Order SH-1 shipped, tracking TRK123 and more words than sixt");
	});
});

describe("whole outboxed messages in the log", () => {
	test.each([
		[undefined, true],
		["development", true],
		["production", false],
		["test", false],
	])("NODE_ENV=%s → %s", async (nodeEnv, whole) => {
		const cfg = readNotificationConfig({ NODE_ENV: nodeEnv });
		expect(cfg.logWholeOutboxed).toBe(whole);
		const lines: string[] = [];
		await createChannels(cfg, (l) => lines.push(l)).email.send(message);
		expect(lines[0].includes("token=abc123")).toBe(whole);
	});
});

describe("message settings", () => {
	test("blank is unset; a storefront address's trailing slash is dropped", () => {
		expect(readNotificationConfig({ SHOP_NAME: "   ", NOTIFY_FROM_EMAIL: " ", STOREFRONT_URL: "" })).toMatchObject({ shopName: "Moleculer Shop", fromEmail: "no-reply@example.com", storefrontUrl: "http://localhost:3000" });
		expect(readNotificationConfig({ SHOP_NAME: " Tea House ", NOTIFY_FROM_EMAIL: "orders@tea.example", STOREFRONT_URL: "https://tea.example/" })).toMatchObject({ shopName: "Tea House", fromEmail: "orders@tea.example", storefrontUrl: "https://tea.example" });
	});

	test.each([
		[{ STOREFRONT_URL: "shop.example.com/" }, /^STOREFRONT_URL must be the storefront's http\(s\) address/],
		[{ STOREFRONT_URL: "ftp://shop.example.com" }, /^STOREFRONT_URL/],
		[{ STOREFRONT_URL: "https://shop.example.com/?utm_source=mail" }, /^STOREFRONT_URL must be the storefront's address without a query or fragment/],
		[{ STOREFRONT_URL: "https://shop.example.com/#/" }, /without a query or fragment/],
		[{ NOTIFY_FROM_EMAIL: "not an email" }, /^NOTIFY_FROM_EMAIL must be an email address/],
		[{ TWILIO_ACCOUNT_SID: "AC1", TWILIO_AUTH_TOKEN: "t" }, /^TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM go together \(SMS through Twilio\): TWILIO_FROM missing/],
		[{ TWILIO_FROM: "+15550100" }, /TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN missing/],
		[{ SENDGRID_API_KEY: "SG.x", SENDGRID_API_BASE: "127.0.0.1:12121" }, /^SENDGRID_API_BASE must be an http:\/\/ or https:\/\/ URL/],
		[{ TWILIO_API_BASE: "htp://127.0.0.1:12122" }, /^TWILIO_API_BASE must be an http:\/\/ or https:\/\/ URL/],
	])("%j stops the start, naming the variable", (env, message) => {
		expect(() => readNotificationConfig(env)).toThrow(message);
	});

	test("Twilio with all three, or none, is taken", () => {
		expect(readNotificationConfig({ TWILIO_ACCOUNT_SID: "AC1", TWILIO_AUTH_TOKEN: "t", TWILIO_FROM: "+15550100" }).twilio).toMatchObject({ accountSid: "AC1", from: "+15550100" });
		expect(readNotificationConfig({}).twilio).toBeNull();
	});
});
