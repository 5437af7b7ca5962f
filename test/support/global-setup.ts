// Replaced by the integration harness (template database + migrations).
export default function setup(): void {}
