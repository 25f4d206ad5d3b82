/** Customer and admin steps shared by the end-to-end suites, written against API.md only. */
import crypto from "node:crypto";
import type { HttpClient } from "./http";

export interface Customer {
	token: string;
	userId: string;
	email: string;
	addressId: string;
}

let counter = 0;
export function uniqueEmail(prefix = "buyer"): string {
	return `${prefix}-${Date.now().toString(36)}-${++counter}-${crypto.randomBytes(3).toString("hex")}@example.com`;
}

export async function registerCustomer(http: HttpClient, email = uniqueEmail()): Promise<Customer> {
	const reg = await http.post("/api/auth/register", { email, password: "correct horse battery", firstName: "Ada", lastName: "Buyer" });
	if (reg.status !== 201) throw new Error(`register ${reg.status}: ${reg.text}`);
	const token = reg.body.accessToken;
	const addr = await http.post(
		"/api/me/addresses",
		{ type: "shipping", line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US", isDefault: true },
		{ token },
	);
	if (addr.status !== 201 && addr.status !== 200) throw new Error(`address ${addr.status}: ${addr.text}`);
	return { token, userId: reg.body.user.id, email, addressId: addr.body.id };
}

export async function login(http: HttpClient, email: string, password: string): Promise<string> {
	const res = await http.post("/api/auth/login", { email, password });
	if (res.status !== 200) throw new Error(`login ${res.status}: ${res.text}`);
	return res.body.accessToken;
}

/** Admin creates a product with one variant; returns the product and its variant id. */
export async function createProduct(http: HttpClient, adminToken: string, opts: { name?: string; price?: number; stock?: number; categoryId?: string } = {}) {
	const name = opts.name ?? `Test Product ${crypto.randomBytes(3).toString("hex")}`;
	const sku = `SKU-${crypto.randomBytes(4).toString("hex")}`;
	const res = await http.post(
		"/api/products",
		{ name, description: `${name} for tests`, price: opts.price ?? 2500, currency: "USD", categoryId: opts.categoryId, variants: [{ sku, name: "Default", stock: opts.stock ?? 10 }] },
		{ token: adminToken },
	);
	if (res.status !== 201) throw new Error(`create product ${res.status}: ${res.text}`);
	return { product: res.body, variantId: res.body.variants[0].id as string };
}

export async function addToCart(http: HttpClient, token: string, variantId: string, quantity = 1) {
	const res = await http.post("/api/cart/items", { variantId, quantity }, { token });
	if (res.status !== 201 && res.status !== 200) throw new Error(`add to cart ${res.status}: ${res.text}`);
	return res.body;
}

export function checkout(http: HttpClient, customer: Customer, key: string = crypto.randomUUID(), token = "pm_card_visa") {
	return http.post("/api/orders", { shippingAddressId: customer.addressId, paymentMethod: { type: "card", token } }, { token: customer.token, headers: { "Idempotency-Key": key } });
}
