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
