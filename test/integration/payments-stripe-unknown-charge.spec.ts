/**
 * A charge whose answer never reached us, with Stripe (the real stripe-node SDK against the fake
 * Stripe server) and WITHOUT webhooks (STRIPE_WEBHOOK_SECRET unset): no event will ever tell the shop
 * what Stripe did, so payments looks the PaymentIntent up by its order (Stripe's search, which lags)
 * and the order ends with what really happened: refunded once if Stripe took the money, failed if
 * Stripe never had the charge.
 */
import { startShop, type Shop } from "../helpers/shop";
import { startFakeStripe, type FakeStripe } from "../helpers/fake-stripe";
import { setEnv } from "../helpers/env";
import { waitFor } from "../helpers/wait";
import { eventRecorder } from "../helpers/fakes";
import { registerCustomer, createProduct, addToCart, checkout, login } from "../helpers/flows";
import { NEVER_CHARGED } from "../../lib/payment-records";

const ADMIN = { email: "stripe-unknown-admin@example.com", password: "Admin-Passw0rd-42!" };
const SEARCH = "/v1/payment_intents/search";

jest.setTimeout(30_000);

describe("a charge whose answer was never recorded (fake Stripe, no webhooks, with orders)", () => {
	let fake: FakeStripe;
	let shop: Shop;
	let admin: string;
	let restoreEnv: () => void;
	const recorder = eventRecorder("stripe-unknown-recorder", ["payment.*"]);

	const payments = () => shop.broker.getLocalService("payments") as any;
	const payment = (orderId: string) => shop.broker.call<any, any>("payments.getByOrder", { orderId });
	const order = async (orderId: string) => (await shop.http.get(`/api/orders/${orderId}`, { token: admin })).body;
	const intentsOf = (orderId: string) => [...fake.intents.values()].filter((pi) => pi.metadata.orderId === orderId);
	const searchesFor = (orderId: string) => fake.requestsTo(SEARCH).filter((r) => r.form.query === `metadata['orderId']:'${orderId}'`);
	/** The sweep's view of the charge as if it had started `ms` ago. */
	const chargeStartedAgo = (orderId: string, ms: number) => payments().db.payments.updateOne({ orderId }, { $set: { chargeStartedAt: new Date(Date.now() - ms) } });

	/** A customer who checks out one unit of a fresh product (stock 5); returns the answer and the order. */
	async function checkOut(price: number) {
		const customer = await registerCustomer(shop.http);
		const { variantId } = await createProduct(shop.http, admin, { price, stock: 5 });
		await addToCart(shop.http, customer.token, variantId, 1);
		const answer = await checkout(shop.http, customer);
		const [placed] = (await shop.http.get("/api/orders", { token: customer.token })).body.rows;
		return { answer, placed };
	}

	beforeAll(async () => {
		fake = await startFakeStripe();
		restoreEnv = setEnv({
			ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_SECRET_KEY: "sk_test_unknown_charge", STRIPE_API_BASE: fake.url, STRIPE_WEBHOOK_SECRET: undefined,
		});
		shop = await startShop({ services: ["users", "products", "cart", "orders", "payments", recorder.schema] });
		admin = await login(shop.http, ADMIN.email, ADMIN.password);
	}, 30_000);
	afterAll(async () => {
		await shop?.stop();
		await fake?.stop();
		restoreEnv();
	});
	afterEach(() => {
		fake.searchLag(0);
		fake.loseCreatedAnswers(0);
		fake.failNext(0);
	});

	test("webhooks are off", async () => {
		expect(payments().provider.name).toBe("stripe");
		expect((await shop.http.request("POST", "/api/payments/webhook", { raw: "{}", headers: { "stripe-signature": "t=1,v1=x" } })).status).toBe(404);
	});

	test("Stripe charged, its answer was lost: the checkout is undone; once Stripe's search shows the intent, the sweep records the payment and the cancelled order is refunded once", async () => {
		// Stripe makes and confirms the intent but the answer never arrives, and its search has not indexed it yet.
		fake.searchLag(60_000);
		fake.loseCreatedAnswers(1);
		const { answer, placed } = await checkOut(2500);
		expect(answer.status).toBe(503);
		const [intent, ...more] = intentsOf(placed.id);
		expect(more).toEqual([]);
		expect(intent.status).toBe("succeeded");
		// Looked for at once (the checkout's look at its payment): not found yet, which is not final.
		expect(searchesFor(placed.id).length).toBeGreaterThan(0);
		expect(await order(placed.id)).toMatchObject({ status: "cancelled", paymentStatus: "pending" });
		expect(await payment(placed.id)).toMatchObject({ status: "pending", providerPaymentId: null });
		await payments().settleUnrecordedCharges();
		expect(await payment(placed.id)).toMatchObject({ status: "pending" });

		// Indexed now: the next sweep finds it.
		fake.searchLag(0);
		await payments().settleUnrecordedCharges();
		const after = await waitFor(() => order(placed.id), (o) => o.paymentStatus === "refunded");
		expect(after).toMatchObject({ status: "cancelled", refundedAmount: placed.total });
		expect(await payment(placed.id)).toMatchObject({ status: "refunded", providerPaymentId: intent.id, cardBrand: "visa", cardLast4: "4242", refundedAmount: placed.total });
		expect(fake.requestsTo("/v1/refunds").filter((r) => r.form.payment_intent === intent.id)).toHaveLength(1);
		expect(intent.amountRefunded).toBe(placed.total);
		expect(recorder.events.filter((e) => e.name === "payment.succeeded" && e.payload.orderId === placed.id)).toHaveLength(1);

		// Settled: later sweeps ask Stripe nothing more about it.
		const searches = searchesFor(placed.id).length;
		await payments().settleUnrecordedCharges();
		expect(searchesFor(placed.id)).toHaveLength(searches);
		expect(fake.requestsTo("/v1/refunds").filter((r) => r.form.payment_intent === intent.id)).toHaveLength(1);
	});

	test("the request never reached Stripe: pending while Stripe's search may lag, then failed as never charged, and the order shows paymentStatus failed", async () => {
		fake.failNext(1);
		const { answer, placed } = await checkOut(1800);
		expect(answer.status).toBe(503);
		expect(intentsOf(placed.id)).toEqual([]);
		expect(await order(placed.id)).toMatchObject({ status: "cancelled", paymentStatus: "pending" });

		// Nine minutes after the charge started, a miss may still be the search lagging.
		await chargeStartedAgo(placed.id, 9 * 60_000);
		await payments().settleUnrecordedCharges();
		expect(await payment(placed.id)).toMatchObject({ status: "pending" });

		await chargeStartedAgo(placed.id, 11 * 60_000);
		await payments().settleUnrecordedCharges();
		expect(await payment(placed.id)).toMatchObject({ status: "failed", failureReason: NEVER_CHARGED, refunds: [] });
		await waitFor(() => order(placed.id), (o) => o.paymentStatus === "failed");
		expect(await order(placed.id)).toMatchObject({ status: "cancelled", refundedAmount: 0 });
	});
});
