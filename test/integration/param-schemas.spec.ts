/**
 * Param schemas are compiled on an action's first call (mixins/lazy-validator.ts), so a mistake in
 * one would only show when the action is first called: every action and event of every service,
 * the gateway's included, is compiled here. And the lazy validator answers as the eager one does.
 */
import { ServiceBroker, Validators, type ServiceSchema } from "moleculer";
import { LazyFastestValidator } from "../../mixins/lazy-validator";
import { VALIDATOR_MESSAGES } from "../../lib/param-rules";
import { SHOP_SERVICE_NAMES, loadService } from "../helpers/shop";
import ApiService from "../../services/api.service";

describe("param schemas", () => {
	test("every action's and event's schema compiles", async () => {
		const broker = new ServiceBroker({ logger: false, transporter: null, metrics: { enabled: false } });
		const eager = new Validators.Fastest({ messages: VALIDATOR_MESSAGES });
		const compiled: string[] = [];
		for (const schema of [...SHOP_SERVICE_NAMES.map(loadService), ApiService as ServiceSchema]) {
			const svc = broker.createService(schema);
			for (const [kind, defs] of [["action", svc.schema.actions ?? {}], ["event", svc.schema.events ?? {}]] as const) {
				for (const [name, def] of Object.entries(defs as Record<string, any>)) {
					if (!def || typeof def !== "object" || typeof def.params !== "object") continue;
					expect(() => eager.compile(def.params)).not.toThrow();
					compiled.push(`${kind} ${svc.name}.${name}`);
				}
			}
		}
		// Mixins' actions are there too (the address book's, the checkout's, the outbox's).
		expect(compiled).toEqual(expect.arrayContaining(["action users.createAddress", "action orders.checkout", "action users.setUserRole"]));
		expect(compiled.length).toBeGreaterThan(100);
		await broker.stop();
	});

	test("the lazy validator compiles on the first call only, and answers as the eager one", () => {
		const lazy = new LazyFastestValidator({ messages: VALIDATOR_MESSAGES });
		const eager = new Validators.Fastest({ messages: VALIDATOR_MESSAGES });
		const spy = jest.spyOn(Validators.Fastest.prototype, "compile");
		try {
			const schema = { $$strict: "remove", quantity: { type: "number", integer: true, min: 1, convert: true }, note: { type: "string", optional: true } };
			const check = lazy.compile(schema);
			expect(spy).toHaveBeenCalledTimes(0);
			expect(check.async).toBe(false);
			for (const params of [{ quantity: "2" }, { quantity: 0 }, { quantity: 1, note: 5 }, {}]) {
				expect(check({ ...params })).toEqual(eager.compile(schema)({ ...params }));
			}
			// One compile for the lazy check's first call; the eager ones above are the others.
			expect(spy.mock.results.filter((_, i) => spy.mock.contexts[i] === lazy)).toHaveLength(1);
			expect(lazy.compile({ $$async: true, a: "string" }).async).toBe(true);
		} finally {
			spy.mockRestore();
		}
	});

	test("a refused secret's value is not in the validation error (it goes to spans, logs and other nodes)", async () => {
		const broker = new ServiceBroker({ logger: false, transporter: null, validator: new LazyFastestValidator({ messages: VALIDATOR_MESSAGES }) });
		const params = {
			password: "string",
			paymentMethod: { type: "object", props: { token: "string" } },
			note: { type: "string", optional: true },
			quantity: { type: "number", optional: true },
		};
		broker.createService({ name: "secretive", actions: { go: { params, handler: () => "ran" }, later: { params: { $$async: true, ...params }, handler: () => "ran" } } });
		await broker.start();
		try {
			for (const action of ["secretive.go", "secretive.later"]) {
				const err: any = await broker.call(action, { password: 87654321123, paymentMethod: { token: ["pm_card_leaked"] }, note: { password: "hunter22", other: 1 }, quantity: "7" }).catch((e: any) => e);
				expect(err.type).toBe("VALIDATION_ERROR");
				const actual = Object.fromEntries(err.data.map((p: any) => [p.field, p.actual]));
				expect(actual).toEqual({ password: "[redacted]", "paymentMethod.token": "[redacted]", note: { password: "[redacted]", other: 1 }, quantity: "7" });
				expect(JSON.stringify(err.data)).not.toMatch(/87654321123|pm_card_leaked|hunter22/);
			}
		} finally {
			await broker.stop();
		}
	});

	test("a broken schema fails its action's first call, not the start", async () => {
		const broker = new ServiceBroker({ logger: false, transporter: null, validator: new LazyFastestValidator({ messages: VALIDATOR_MESSAGES }) });
		broker.createService({ name: "broken", actions: { go: { params: { a: { type: "no-such-rule" } }, handler: () => "ran" } } });
		await broker.start();
		// Thrown from within the call (the gateway's callers await it, and answer 500).
		await expect(Promise.resolve().then(() => broker.call("broken.go", { a: 1 }))).rejects.toThrow(/no-such-rule/i);
		await broker.stop();
	});
});
