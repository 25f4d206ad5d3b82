import { NOT_ONE_LINE_TEXT } from "./param-rules";

/**
 * How a review names its author in public: the first name and the last name's initial ("Bea S."),
 * as shops usually do; the full name and the email never leave the account. Null without a first
 * name (the storefront shows its own "a customer").
 */
export function reviewAuthorName(user: { firstName?: string | null; lastName?: string | null } | null | undefined): string | null {
	const first = shownText(user?.firstName);
	if (!first) return null;
	// The first letter (with its accents) or digit: a leading zero-width or direction mark is no initial.
	const initial = /\p{L}\p{M}*|\p{N}/u.exec(shownText(user?.lastName).normalize("NFC"))?.[0];
	return initial ? `${first} ${initial.toUpperCase()}.` : first;
}

/**
 * A stored name as a public page may show it: without control characters, bidirectional overrides
 * and isolates (they reorder the rest of the line) or halves of surrogate pairs, which names have
 * been refused since but an account may hold from before.
 */
function shownText(name: string | null | undefined): string {
	return (name ?? "").replace(NOT_ONE_LINE_TEXT, "").trim();
}
