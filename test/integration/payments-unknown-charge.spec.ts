/**
 * A charge whose provider answer was never recorded (the call errored, or its node died while the
 * provider was being asked), end to end with the built-in provider: the checkout is undone, payments
 * asks the provider what the charge did, and the order ends with the payment's real outcome instead
 * of `pending` for ever. And money the provider reports taken after the payment was recorded failed
 * is given back.
 */
import crypto from "node:crypto";
import Stripe from "stripe";
import { startShop, type Shop } from "../helpers/shop";
import { setEnv } from "../helpers/env";
import { waitFor } from "../helpers/wait";
import { eventRecorder } from "../helpers/fakes";
import { registerCustomer, createProduct, addToCart, checkout as checkoutWith, login, type Customer } from "../helpers/flows";
import { PaymentProviderError } from "../../adapters/payments/provider";
import { NEVER_CHARGED } from "../../lib/payment-records";

const ADMIN = { email: "unknown-charge-admin@example.com", password: "Admin-Passw0rd-42!" };
const WEBHOOK_SECRET = "whsec_unknown_charge_spec";

jest.setTimeout(30_000);

describe("a charge whose answer was never recorded (built-in provider, with orders)", () => {
	let shop: Shop;
	let admin: string;
	let restoreEnv: () => void;
	let n = 0;
	const recorder = eventRecorder("unknown-charge-recorder", ["payment.*", "order.*"]);

	const payments = () => shop.broker.getLocalService("payments") as any;
	const orders = () => shop.broker.getLocalService("orders") as any;
	const payment = (orderId: string) => shop.broker.call<any, any>("payments.getByOrder", { orderId });
	const order = async (orderId: string) => (await shop.http.get(`/api/orders/${orderId}`, { token: admin })).body;
	const stockOf = async (variantId: string) => (await shop.broker.call<any[], any>("products.getVariants", { ids: [variantId] }))[0].stock as number;
	const eventsFor = (orderId: string, name: string) => recorder.events.filter((e) => e.name === name && e.payload.orderId === orderId);

	/** A customer with one unit of a fresh product (stock 5) in the cart. */
	async function buyer(price = 2000) {
		const customer = await registerCustomer(shop.http);
		const { variantId } = await createProduct(shop.http, admin, { price, stock: 5 });
		await addToCart(shop.http, customer.token, variantId, 1);
		return { ...customer, variantId };
	}

	const checkout = (b: Customer) => checkoutWith(shop.http, b);

	async function onlyOrderOf(b: { token: string }) {
		const [placed, ...more] = (await shop.http.get("/api/orders", { token: b.token })).body.rows;
		expect(more).toEqual([]);
		return placed;
	}

	/** Stripe's signed webhook saying a payment of the order succeeded. */
	async function paidWebhook(orderId: string, intentId: string, amount: number) {
		const object = { id: intentId, object: "payment_intent", status: "succeeded", amount, metadata: { orderId } };
		const payload = JSON.stringify({ id: `evt_uc_${process.pid}_${++n}`, object: "event", type: "payment_intent.succeeded", created: Math.floor(Date.now() / 1000), data: { object } });
		const signature = new Stripe("sk_test_signer").webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
		return shop.http.request("POST", "/api/payments/webhook", { raw: payload, headers: { "stripe-signature": signature } });
	}

	beforeAll(async () => {
		restoreEnv = setEnv({ ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_SECRET_KEY: undefined });
		shop = await startShop({ services: ["users", "products", "cart", "orders", "payments", recorder.schema] });
		admin = await login(shop.http, ADMIN.email, ADMIN.password);
	}, 30_000);
	afterAll(async () => {
		await shop?.stop();
		restoreEnv();
	});
	afterEach(() => jest.restoreAllMocks());

	test("the charge call errored: the checkout is undone and its order ends with paymentStatus failed (never charged), not pending", async () => {
		const b = await buyer();
		jest.spyOn(payments().provider, "createPayment").mockRejectedValueOnce(new PaymentProviderError("connection reset"));
		expect((await checkout(b)).status).toBe(503);

		const placed = await onlyOrderOf(b);
		expect(placed).toMatchObject({ status: "cancelled", paymentStatus: "failed", refundedAmount: 0 });
		expect(await payment(placed.id)).toMatchObject({ status: "failed", failureReason: NEVER_CHARGED, refunds: [] });
		expect(await stockOf(b.variantId)).toBe(5);
		// Recovery finds nothing more to do.
		await orders().recoverInterrupted(0);
		expect(await order(placed.id)).toMatchObject({ status: "cancelled", paymentStatus: "failed" });
		expect(eventsFor(placed.id, "payment.failed")).toHaveLength(1);
	});

	test("the node died while the provider was being asked (a previous run): recovery undoes the checkout and the order ends with paymentStatus failed", async () => {
		const b = await buyer();
		const svc = orders();
		const call = svc.callFrom;
		// The charge's pending payment is made, then the node dies before the provider is even asked.
		jest.spyOn(svc, "callFrom").mockImplementation(async function (this: unknown, c: any, name: any, params: any) {
			if (name !== "payments.charge") return call.call(svc, c, name, params);
			await payments().claimCharge(params);
			throw new Error("node died");
		});
		jest.spyOn(svc.checkoutSaga, "compensate").mockResolvedValue([]);
		expect((await checkout(b)).status).toBe(503);
		jest.restoreAllMocks();

		const placed = await onlyOrderOf(b);
		// What recovery finds: the checkout left running, the payment pending without a provider id, its lease run out.
		await svc.db.orders.updateOne({ id: placed.id }, { $set: { "saga.state": "running" } });
		await payments().db.payments.updateOne({ orderId: placed.id }, { $set: { chargeLeaseUntil: new Date(Date.now() - 1000) } });
		expect(await payments().db.payments.findOne({ orderId: placed.id })).toMatchObject({ status: "pending", providerPaymentId: null });

		await svc.recoverInterrupted(0);
		expect(await order(placed.id)).toMatchObject({ status: "cancelled", paymentStatus: "failed", refundedAmount: 0 });
		expect(await payment(placed.id)).toMatchObject({ status: "failed", failureReason: NEVER_CHARGED });
		expect(await stockOf(b.variantId)).toBe(5);
	});

	test("recorded failed as never charged, then the provider reports it paid after all: the money goes back once, and the order shows it", async () => {
		const b = await buyer(3000);
		jest.spyOn(payments().provider, "createPayment").mockRejectedValueOnce(new PaymentProviderError("timeout"));
		expect((await checkout(b)).status).toBe(503);
		const placed = await onlyOrderOf(b);
		expect(placed).toMatchObject({ status: "cancelled", paymentStatus: "failed" });

		const intentId = `pi_test_${crypto.randomBytes(12).toString("hex")}`;
		expect((await paidWebhook(placed.id, intentId, placed.total)).status).toBe(200);
		const paid = await payment(placed.id);
		expect(paid).toMatchObject({ status: "refunded", providerPaymentId: intentId, refundedAmount: placed.total, paidAfterFailure: true });
		expect(paid.refunds).toEqual([expect.objectContaining({ amount: placed.total, status: "succeeded" })]);
		// Never a sale: analytics keeps it out of revenue.
		expect(eventsFor(placed.id, "payment.refunded")).toEqual([expect.objectContaining({ payload: expect.objectContaining({ amount: placed.total, sale: false }) })]);
		await waitFor(() => order(placed.id), (o) => o.refundedAmount === placed.total);
		expect(await order(placed.id)).toMatchObject({ status: "cancelled", paymentStatus: "refunded", refundedAmount: placed.total });
		// The order records the money taken as well as given back: never more refunded than paid.
		expect((await orders().db.orders.findById(placed.id)).paidAmount).toBe(placed.total);

		// Stripe sends it again (another event about the same intent): nothing more is refunded.
		expect((await paidWebhook(placed.id, intentId, placed.total)).status).toBe(200);
		await orders().recoverInterrupted(0);
		expect((await payment(placed.id)).refunds).toHaveLength(1);
		expect(eventsFor(placed.id, "payment.refunded")).toHaveLength(1);
		expect(eventsFor(placed.id, "payment.succeeded")).toHaveLength(1);
	});
});
