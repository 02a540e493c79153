// What flightbox accepts as a mail address in config (mail.to, rules' mail actions, the CLI):
// a conservative dot-atom local part and a hostname; never CR, LF or spaces. Pure.
export const MAIL_ADDRESS_RE = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
export const MAX_MAIL_ADDRESS_CHARS = 254;

export function isMailAddress(s: string): boolean {
  return s.length <= MAX_MAIL_ADDRESS_CHARS && MAIL_ADDRESS_RE.test(s);
}
