/**
 * A local stand-in for api.stripe.com, for the real stripe-node SDK (`new Stripe(key, {host, port,
 * protocol: "http"})`). It answers /v1/payment_intents (create, retrieve, cancel, search by metadata) and /v1/refunds (create, list by payment_intent) the way Stripe does for its
 * test payment methods, records every request with its Idempotency-Key header, and replays the
 * stored response for a repeated key (a different body under the same key is an idempotency_error).
 */
import http from "node:http";
import crypto from "node:crypto";
import type { AddressInfo } from "node:net";

export interface RecordedStripeRequest {
	method: string;
	path: string;
	idempotencyKey?: string;
	authorization?: string;
	/** The form body as Stripe encodes it: `metadata[orderId]`, `expand[0]`, ... */
	form: Record<string, string>;
	/** True when the response was a replay of an earlier one with the same key. */
	replayed: boolean;
}

interface StoredResponse {
	fingerprint: string;
	status: number;
	body: unknown;
}

interface FakeIntent {
	id: string;
	amount: number;
	currency: string;
	status: string;
	metadata: Record<string, string>;
	paymentMethod: string;
	chargeId: string | null;
	brand: string;
	last4: string;
	amountRefunded: number;
	lastError: { code: string; decline_code?: string; message: string } | null;
}

interface FakeRefund {
	id: string;
	amount: number;
	paymentIntent: string;
	status: "succeeded" | "pending" | "failed" | "canceled";
	created: number;
}

/** Stripe's test payment methods and what Stripe does with them. */
const CARDS: Record<string, { brand: string; last4: string; outcome: "succeeded" | "requires_action" | "declined"; decline?: string; message?: string }> = {
	pm_card_visa: { brand: "visa", last4: "4242", outcome: "succeeded" },
	pm_card_mastercard: { brand: "mastercard", last4: "4444", outcome: "succeeded" },
	pm_card_chargeDeclined: { brand: "visa", last4: "0002", outcome: "declined", decline: "generic_decline", message: "Your card was declined." },
	pm_card_chargeDeclinedInsufficientFunds: { brand: "visa", last4: "9995", outcome: "declined", decline: "insufficient_funds", message: "Your card has insufficient funds." },
	pm_card_authenticationRequired: { brand: "visa", last4: "3184", outcome: "requires_action" },
};

export interface FakeStripe {
	url: string;
	/** `{host, port, protocol}` for the Stripe constructor. */
	api: { host: string; port: number; protocol: "http" };
	requests: RecordedStripeRequest[];
	intents: Map<string, FakeIntent>;
	/** Requests (not replays) that reached a path, e.g. "/v1/payment_intents". */
	requestsTo(path: string, opts?: { includeReplays?: boolean }): RecordedStripeRequest[];
	/** Answers the next `count` requests with a 500 (and no retry advice), as during an outage. */
	failNext(count: number): void;
	/** Answers every request `ms` later (0: at once), as over a real network: checkouts running at once interleave. */
	delayAnswers(ms: number): void;
	/**
	 * The next `count` PaymentIntent creations go through (the intent is made and its answer kept under
	 * the idempotency key, as Stripe does) but are answered with a 500 without retry advice: the caller
	 * never learns of the intent.
	 */
	loseCreatedAnswers(count: number): void;
	/** Intents show in GET /v1/payment_intents/search only `ms` after they were created (0: at once), as Stripe's search lags. */
	searchLag(ms: number): void;
	refunds: Map<string, FakeRefund>;
	/** The next `count` refunds are made (and their answer kept under the idempotency key) but answered with a 500. */
	loseRefundAnswers(count: number): void;
	/** A refund made outside the shop (Stripe's dashboard), `pending` or at once `succeeded`: Stripe then sends charge.refunded. */
	refundAtDashboard(intentId: string, amount: number, status?: "succeeded" | "pending"): FakeRefund;
	/** A refund that fails after Stripe accepted it: its money is back on the charge. */
	failRefund(refundId: string): void;
	stop(): Promise<void>;
}

const rid = (prefix: string) => `${prefix}_${crypto.randomBytes(12).toString("hex")}`;

function stripeError(status: number, error: Record<string, unknown>) {
	return { status, body: { error } };
}

export async function startFakeStripe(): Promise<FakeStripe> {
	const requests: RecordedStripeRequest[] = [];
	const intents = new Map<string, FakeIntent>();
	const byKey = new Map<string, StoredResponse>();
	let failures = 0;
	let delayMs = 0;
	let lostCreates = 0;
	let searchLagMs = 0;
	let lostRefunds = 0;
	const createdAt = new Map<string, number>();
	const refunds = new Map<string, FakeRefund>();

	function makeRefund(pi: FakeIntent, amount: number, status: FakeRefund["status"] = "succeeded"): FakeRefund {
		pi.amountRefunded += amount;
		const refund: FakeRefund = { id: rid("re"), amount, paymentIntent: pi.id, status, created: Math.floor(Date.now() / 1000) };
		refunds.set(refund.id, refund);
		return refund;
	}

	function refundJson(r: FakeRefund) {
		const pi = intents.get(r.paymentIntent)!;
		return { id: r.id, object: "refund", amount: r.amount, currency: pi.currency, payment_intent: pi.id, charge: pi.chargeId, status: r.status, created: r.created, metadata: {} };
	}

	// GET /v1/refunds?payment_intent=: newest first, as Stripe lists them (one page: the shop's refunds are few).
	function listRefunds(form: Record<string, string>) {
		const data = [...refunds.values()].filter((r) => !form.payment_intent || r.paymentIntent === form.payment_intent).reverse().map(refundJson);
		return { status: 200, body: { object: "list", url: "/v1/refunds", has_more: false, data } };
	}

	function intentJson(pi: FakeIntent, expand: string[]) {
		const charge = pi.chargeId && {
			id: pi.chargeId,
			object: "charge",
			amount: pi.amount,
			amount_refunded: pi.amountRefunded,
			currency: pi.currency,
			payment_intent: pi.id,
			refunded: pi.amountRefunded >= pi.amount,
			status: pi.status === "succeeded" ? "succeeded" : "failed",
			payment_method_details: { type: "card", card: { brand: pi.brand, last4: pi.last4 } },
		};
		const method = { id: pi.paymentMethod, object: "payment_method", type: "card", card: { brand: pi.brand, last4: pi.last4 } };
		return {
			id: pi.id,
			object: "payment_intent",
			amount: pi.amount,
			currency: pi.currency,
			status: pi.status,
			client_secret: `${pi.id}_secret_fake`,
			metadata: pi.metadata,
			latest_charge: expand.includes("latest_charge") ? charge || null : pi.chargeId,
			payment_method: expand.includes("payment_method") ? method : pi.paymentMethod,
			last_payment_error: pi.lastError && { type: "card_error", ...pi.lastError },
		};
	}

	function createIntent(form: Record<string, string>) {
		const amount = Number(form.amount);
		if (!Number.isSafeInteger(amount) || amount < 1) return stripeError(400, { type: "invalid_request_error", code: "parameter_invalid_integer", param: "amount", message: "Invalid integer: amount" });
		if (!form.currency) return stripeError(400, { type: "invalid_request_error", code: "parameter_missing", param: "currency", message: "Missing required param: currency." });
		if (amount > 99_999_999) return stripeError(400, { type: "invalid_request_error", code: "amount_too_large", param: "amount", message: "Amount must be no more than $999,999.99" });
		const card = CARDS[form.payment_method];
		if (!card) {
			return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "payment_method", message: `No such PaymentMethod: '${form.payment_method}'` });
		}
		const metadata: Record<string, string> = {};
		for (const [k, v] of Object.entries(form)) {
			const m = /^metadata\[(.+)\]$/.exec(k);
			if (m) metadata[m[1]] = v;
		}
		const expand = Object.entries(form).filter(([k]) => k.startsWith("expand[")).map(([, v]) => v);
		const confirmed = form.confirm === "true";
		const pi: FakeIntent = {
			id: rid("pi"),
			amount,
			currency: form.currency,
			status: "requires_confirmation",
			metadata,
			paymentMethod: rid("pm"),
			chargeId: null,
			brand: card.brand,
			last4: card.last4,
			amountRefunded: 0,
			lastError: null,
		};
		intents.set(pi.id, pi);
		createdAt.set(pi.id, Date.now());
		if (!confirmed) return { status: 200, body: intentJson(pi, expand) };
		if (card.outcome === "requires_action") {
			pi.status = "requires_action";
			return { status: 200, body: intentJson(pi, expand) };
		}
		pi.chargeId = rid("ch");
		if (card.outcome === "declined") {
			pi.status = "requires_payment_method";
			pi.lastError = { code: "card_declined", decline_code: card.decline, message: card.message! };
			return stripeError(402, { type: "card_error", code: "card_declined", decline_code: card.decline, message: card.message, charge: pi.chargeId, payment_intent: intentJson(pi, []) });
		}
		pi.status = "succeeded";
		return { status: 200, body: intentJson(pi, expand) };
	}

	function createRefund(form: Record<string, string>) {
		const pi = intents.get(form.payment_intent);
		if (!pi) return stripeError(400, { type: "invalid_request_error", code: "resource_missing", param: "payment_intent", message: `No such payment_intent: '${form.payment_intent}'` });
		if (pi.status !== "succeeded") return stripeError(400, { type: "invalid_request_error", code: "charge_not_refundable", message: "This PaymentIntent has no successful charge to refund." });
		const left = pi.amount - pi.amountRefunded;
		const amount = form.amount === undefined ? left : Number(form.amount);
		if (!Number.isSafeInteger(amount) || amount < 1) return stripeError(400, { type: "invalid_request_error", code: "parameter_invalid_integer", param: "amount", message: "Invalid integer: amount" });
		if (amount > left) {
			return stripeError(400, { type: "invalid_request_error", code: "amount_too_large", param: "amount", message: `Refund amount (${amount}) is greater than unrefunded amount on charge (${left})` });
		}
		return { status: 200, body: refundJson(makeRefund(pi, amount)) };
	}

	// Cancelable while it waits for something (https://docs.stripe.com/api/payment_intents/cancel), not once it settled.
	function cancelIntent(id: string) {
		const pi = intents.get(id);
		if (!pi) return stripeError(404, { type: "invalid_request_error", code: "resource_missing", message: `No such payment_intent: '${id}'` });
		if (!["requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"].includes(pi.status)) {
			return stripeError(400, {
				type: "invalid_request_error",
				code: "payment_intent_unexpected_state",
				message: `You cannot cancel this PaymentIntent because it has a status of ${pi.status}.`,
				payment_intent: intentJson(pi, []),
			});
		}
		pi.status = "canceled";
		return { status: 200, body: intentJson(pi, []) };
	}

	// Stripe's search query language, as far as the shop uses it: metadata['key']:'value' (quotes escaped with \).
	function searchIntents(form: Record<string, string>) {
		const m = /^metadata\['([^']+)'\]:'((?:[^'\\]|\\.)*)'$/.exec(form.query ?? "");
		if (!m) return stripeError(400, { type: "invalid_request_error", param: "query", message: `This fake searches only metadata['key']:'value', not: ${form.query}` });
		const value = m[2].replace(/\\(.)/g, "$1");
		const expand = Object.entries(form).filter(([k]) => k.startsWith("expand[")).map(([, v]) => v.replace(/^data\./, ""));
		const indexed = [...intents.values()].filter((pi) => pi.metadata[m[1]] === value && Date.now() - (createdAt.get(pi.id) ?? 0) >= searchLagMs);
		return { status: 200, body: { object: "search_result", url: "/v1/payment_intents/search", has_more: false, next_page: null, data: indexed.map((pi) => intentJson(pi, expand)) } };
	}

	function route(method: string, path: string, form: Record<string, string>): { status: number; body: unknown } {
		if (failures > 0) {
			failures--;
			return stripeError(500, { type: "api_error", message: "An unknown error occurred" });
		}
		if (method === "POST" && path === "/v1/payment_intents") return createIntent(form);
		if (method === "POST" && path === "/v1/refunds") return createRefund(form);
		if (method === "GET" && path === "/v1/refunds") return listRefunds(form);
		if (method === "GET" && path === "/v1/payment_intents/search") return searchIntents(form);
		const cancel = /^\/v1\/payment_intents\/([^/]+)\/cancel$/.exec(path);
		if (method === "POST" && cancel) return cancelIntent(cancel[1]);
		const get = /^\/v1\/payment_intents\/([^/]+)$/.exec(path);
		if (method === "GET" && get) {
			const pi = intents.get(get[1]);
			return pi ? { status: 200, body: intentJson(pi, []) } : stripeError(404, { type: "invalid_request_error", code: "resource_missing", message: `No such payment_intent: '${get[1]}'` });
		}
		return stripeError(404, { type: "invalid_request_error", message: `Unrecognized request URL (${method}: ${path}).` });
	}

	const server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			const raw = Buffer.concat(chunks).toString("utf8");
			const url = new URL(req.url ?? "/", "http://fake-stripe");
			// A GET's parameters come in its query string (search).
			const form = Object.fromEntries(new URLSearchParams(req.method === "GET" ? url.search : raw));
			const header = (name: string) => {
				const v = req.headers[name];
				return Array.isArray(v) ? v[0] : v;
			};
			const idempotencyKey = header("idempotency-key");
			const method = req.method ?? "GET";
			const record: RecordedStripeRequest = { method, path: url.pathname, idempotencyKey, authorization: header("authorization"), form, replayed: false };
			requests.push(record);

			let answer: { status: number; body: unknown };
			const extraHeaders: Record<string, string> = {};
			const stored = idempotencyKey ? byKey.get(idempotencyKey) : undefined;
			const fingerprint = `${method} ${url.pathname} ${raw}`;
			if (!/^Bearer sk_(test|live)_\S+$/.test(record.authorization ?? "")) {
				answer = stripeError(401, { type: "invalid_request_error", message: "Invalid API Key provided" });
			} else if (stored && stored.fingerprint !== fingerprint) {
				answer = stripeError(400, { type: "idempotency_error", message: `Keys for idempotent requests can only be used with the same parameters they were first used with.` });
			} else if (stored) {
				record.replayed = true;
				extraHeaders["idempotent-replayed"] = "true";
				answer = stored;
			} else {
				answer = route(method, url.pathname, form);
				// Like Stripe, only completed requests are stored: a 500 may be retried under the same key.
				if (idempotencyKey && method === "POST" && answer.status < 500) byKey.set(idempotencyKey, { fingerprint, ...answer });
				if (answer.status >= 500) extraHeaders["stripe-should-retry"] = "false";
				if (lostRefunds > 0 && method === "POST" && url.pathname === "/v1/refunds" && answer.status === 200) {
					lostRefunds--;
					answer = stripeError(500, { type: "api_error", message: "An unknown error occurred" });
					extraHeaders["stripe-should-retry"] = "false";
				}
				if (lostCreates > 0 && method === "POST" && url.pathname === "/v1/payment_intents" && answer.status === 200) {
					lostCreates--;
					answer = stripeError(500, { type: "api_error", message: "An unknown error occurred" });
					extraHeaders["stripe-should-retry"] = "false";
				}
			}
			const send = () => {
				res.writeHead(answer.status, { "content-type": "application/json", "request-id": rid("req"), ...extraHeaders });
				res.end(JSON.stringify(answer.body));
			};
			if (delayMs > 0) setTimeout(send, delayMs);
			else send();
		});
	});
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	const { port } = server.address() as AddressInfo;

	return {
		url: `http://127.0.0.1:${port}`,
		api: { host: "127.0.0.1", port, protocol: "http" },
		requests,
		intents,
		requestsTo: (path, opts = {}) => requests.filter((r) => r.path === path && (opts.includeReplays || !r.replayed)),
		failNext(count) {
			failures = count;
		},
		delayAnswers(ms) {
			delayMs = ms;
		},
		loseCreatedAnswers(count) {
			lostCreates = count;
		},
		searchLag(ms) {
			searchLagMs = ms;
		},
		refunds,
		loseRefundAnswers(count) {
			lostRefunds = count;
		},
		refundAtDashboard(intentId, amount, status = "succeeded") {
			return makeRefund(intents.get(intentId)!, amount, status);
		},
		failRefund(refundId) {
			const r = refunds.get(refundId)!;
			r.status = "failed";
			intents.get(r.paymentIntent)!.amountRefunded -= r.amount;
		},
		stop: () =>
			new Promise<void>((resolve) => {
				server.closeAllConnections();
				server.close(() => resolve());
			}),
	};
}
