/**
 * How a review names its author in public: the first name and the last name's initial ("Bea S."),
 * as shops usually do; the full name and the email never leave the account. Null without a first
 * name (the storefront shows its own "a customer").
 */
export function reviewAuthorName(user: { firstName?: string | null; lastName?: string | null } | null | undefined): string | null {
	const first = user?.firstName?.trim();
	if (!first) return null;
	const initial = Array.from(user?.lastName?.trim() ?? "")[0];
	return initial ? `${first} ${initial.toUpperCase()}.` : first;
}
