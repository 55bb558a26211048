import { expect, test, type Browser, type BrowserContext, type Page } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// One story told in order, against one real backend started by global-setup.ts: the organiser sets
// up an event, customers book it until it is sold out, the organiser cancels it.

const here = dirname(fileURLToPath(import.meta.url));
const SHOTS = process.env.MYEVENTS_SCREENSHOTS ?? resolve(here, '../../docs/screenshots');
mkdirSync(SHOTS, { recursive: true });

const base = () => {
  const b = process.env.MYEVENTS_BASE_URL;
  if (!b) throw new Error('MYEVENTS_BASE_URL is not set: global setup did not run');
  return b;
};
const ADMIN_EMAIL = () => process.env.MYEVENTS_E2E_ADMIN_EMAIL ?? 'admin@example.com';
const ADMIN_PASSWORD = () => process.env.MYEVENTS_E2E_ADMIN_PASSWORD ?? '';

const run = Date.now().toString(36);
const EVENT = 'Jazz Night at the Studio';
const CAPACITY = 6;
const alice = { name: 'Alice Martin', email: `alice-${run}@example.com`, password: 'alice-password-1' };
const guestEmail = `bob-${run}@example.com`;

let organiser: Page;
let customer: Page;
let guest: Page;
let eventId = '';
const contexts: BrowserContext[] = [];

async function newPage(browser: Browser, viewport = { width: 1280, height: 800 }): Promise<Page> {
  const ctx = await browser.newContext({ baseURL: base(), locale: 'en-GB', viewport });
  contexts.push(ctx);
  const page = await ctx.newPage();
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  return page;
}

async function shot(page: Page, name: string, fullPage = true): Promise<void> {
  // Let the live-seat animation and fonts settle so that pictures are steady.
  // A full-page capture of a scrolled page draws the sticky header mid-page: scroll back first.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(150);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage, animations: 'disabled' });
}

/** `<input type="datetime-local">` value, days from now at a given hour, in the browser's zone. */
function localValue(daysAhead: number, hour: number, minute = 0): string {
  const d = new Date();
  d.setDate(d.getDate() + daysAhead);
  d.setHours(hour, minute, 0, 0);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

async function signIn(page: Page, email: string, password: string) {
  await page.goto('/#/signin');
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test.describe.serial('MyEvents in the browser', () => {
  test.beforeAll(async ({ browser }) => {
    organiser = await newPage(browser);
    customer = await newPage(browser);
    guest = await newPage(browser);
  });

  test.afterAll(async () => {
    await Promise.all(contexts.map((c) => c.close()));
  });

  test('a visitor sees an empty, signed-out shop', async () => {
    await customer.goto('/');
    await expect(customer.getByRole('heading', { name: 'No events yet' })).toBeVisible();
    await expect(customer.getByRole('link', { name: 'Sign in' })).toBeVisible();
    await expect(customer.getByRole('link', { name: 'Organiser' })).toHaveCount(0);
    await customer.goto('/#/bookings');
    await expect(customer.getByRole('heading', { name: 'Sign in to see your bookings' })).toBeVisible();
  });

  test('errors from the API are shown in words', async () => {
    await signIn(organiser, ADMIN_EMAIL(), 'not-the-password');
    await expect(organiser.getByRole('alert')).toContainText('Wrong e-mail address or password.');
    await shot(organiser, 'sign-in-error');
  });

  test('the organiser signs in and creates a location with halls', async () => {
    await signIn(organiser, ADMIN_EMAIL(), ADMIN_PASSWORD());
    await expect(organiser).toHaveURL(/#\/admin$/);
    await expect(organiser.getByRole('link', { name: 'Organiser' })).toBeVisible();

    await organiser.getByRole('link', { name: 'Locations' }).click();
    await organiser.getByLabel('Name', { exact: true }).fill('Riverside Arts Centre');
    await organiser.getByLabel('Address').fill('12 Quay Street');
    await organiser.getByLabel('Country').fill('Ireland');
    await organiser.getByLabel('Opens at (hour)').fill('10');
    await organiser.getByLabel('Closes at (hour)').fill('23');
    await organiser.getByLabel('Hall 1 name').fill('Main Hall');
    await organiser.getByLabel('Where in the building').first().fill('Ground floor');
    await organiser.getByLabel('Capacity').first().fill('250');
    await organiser.getByRole('button', { name: '+ Add hall' }).click();
    await organiser.getByRole('button', { name: '+ Add hall' }).click();
    await expect(organiser.getByTestId('hall-row')).toHaveCount(3);
    await organiser.getByRole('button', { name: 'Remove hall 3' }).click();
    await expect(organiser.getByTestId('hall-row')).toHaveCount(2);
    await organiser.getByLabel('Hall 2 name').fill('Studio');
    await organiser.getByLabel('Where in the building').nth(1).fill('First floor');
    await organiser.getByLabel('Capacity').nth(1).fill('40');
    await shot(organiser, 'organiser-new-location');
    await organiser.getByRole('button', { name: 'Create location' }).click();

    await expect(organiser.getByText('Location “Riverside Arts Centre” created.')).toBeVisible();
    const card = organiser.getByTestId('location').filter({ hasText: 'Riverside Arts Centre' });
    await expect(card).toContainText('Main Hall');
    await expect(card).toContainText('Studio');
    await expect(card).toContainText('40 seats');
  });

  test('the organiser creates events', async () => {
    await organiser.getByRole('link', { name: 'New event' }).first().click();
    await expect(organiser.getByRole('heading', { name: 'New event' })).toBeVisible();

    // A validation error first: the capacity may not exceed the hall's.
    await organiser.getByLabel('Name', { exact: true }).fill(EVENT);
    await organiser.getByLabel('Location').selectOption({ label: 'Riverside Arts Centre' });
    await organiser.getByLabel('Hall').selectOption('Studio');
    await organiser.getByLabel('Starts').fill(localValue(14, 20));
    await organiser.getByLabel('Ends').fill(localValue(14, 22, 30));
    await expect(organiser.getByLabel('Duration (minutes)')).toHaveValue('150');
    await organiser.getByLabel('Capacity (optional)').fill('41');
    await organiser.getByRole('button', { name: 'Create event' }).click();
    await expect(organiser.getByRole('alert')).toContainText('has only 40 seats');

    await organiser.getByLabel('Capacity (optional)').fill(String(CAPACITY));
    await shot(organiser, 'organiser-new-event');
    await organiser.getByRole('button', { name: 'Create event' }).click();
    const link = organiser.getByTestId('created-event-link');
    await expect(link).toBeVisible();
    eventId = decodeURIComponent(((await link.getAttribute('href')) ?? '').replace('#/events/', ''));
    expect(eventId).not.toBe('');

    // Two more, so that the list looks like a shop; the second is cancelled later.
    for (const [name, days, hall] of [
      ['Chamber Orchestra: Spring Gala', 21, 'Main Hall'],
      ['Stand-up Comedy Open Mic', 9, 'Studio'],
    ] as const) {
      await organiser.getByLabel('Name', { exact: true }).fill(name);
      await organiser.getByLabel('Hall').selectOption(hall);
      await organiser.getByLabel('Starts').fill(localValue(days, 19, 30));
      await organiser.getByLabel('Ends').fill(localValue(days, 21, 30));
      await organiser.getByRole('button', { name: 'Create event' }).click();
      await expect(organiser.getByText(`Event “${name}” created.`)).toBeVisible();
    }
  });

  test('a customer signs up, books, sees the booking and cancels it', async () => {
    await customer.goto('/');
    const card = customer.getByTestId('event-card').filter({ hasText: EVENT });
    await expect(card).toBeVisible();
    await expect(card).toContainText('Riverside Arts Centre · Studio');
    // The bookings service learns about new events a moment later; the list polls every 5 s.
    await expect(card.getByTestId('seats-left')).toHaveText(`${CAPACITY} of ${CAPACITY} seats left`, { timeout: 15_000 });
    await shot(customer, 'event-list');

    await customer.getByRole('link', { name: 'Sign up' }).click();
    await customer.getByLabel('Name').fill(alice.name);
    await customer.getByLabel('E-mail').fill(alice.email);
    await customer.getByLabel('Password').fill('short');
    await customer.getByRole('button', { name: 'Create account' }).click();
    await expect(customer.getByRole('alert')).toContainText('at least 8 characters');
    await customer.getByLabel('Password').fill(alice.password);
    await customer.getByRole('button', { name: 'Create account' }).click();
    await expect(customer.getByText(alice.name)).toBeVisible();
    await expect(customer.getByRole('link', { name: 'My bookings' })).toBeVisible();

    await customer.getByRole('link', { name: `Book ${EVENT}` }).click();
    await expect(customer.getByRole('heading', { name: EVENT })).toBeVisible();
    await expect(customer.getByTestId('availability')).toHaveText(`${CAPACITY} of ${CAPACITY} seats left`);
    await expect(customer.getByText(`Booking as ${alice.name}`)).toBeVisible();
    await customer.getByLabel('Seats').selectOption('2');
    await shot(customer, 'event-page');
    await customer.getByRole('button', { name: 'Book 2 seats' }).click();

    const confirmation = customer.getByTestId('confirmation');
    await expect(confirmation).toContainText('Booking confirmed');
    const bookingId = (await customer.getByTestId('booking-id').textContent())?.trim() ?? '';
    expect(bookingId).not.toBe('');
    await expect(customer.getByTestId('availability')).toHaveText(`${CAPACITY - 2} of ${CAPACITY} seats left`);
    await shot(customer, 'booking-confirmation');

    await confirmation.getByRole('link', { name: 'My bookings' }).click();
    const booking = customer.getByTestId('booking').filter({ hasText: bookingId });
    await expect(booking).toContainText(EVENT);
    await expect(booking).toContainText('2 seats');
    await expect(booking.getByTestId('booking-status')).toHaveText('Active');
    await shot(customer, 'my-bookings');

    await booking.getByRole('button', { name: `Cancel booking for ${EVENT}` }).click();
    const dialog = customer.getByRole('dialog', { name: 'Cancel this booking?' });
    await expect(dialog).toBeVisible();
    await dialog.getByRole('button', { name: 'Yes, cancel booking' }).click();
    await expect(dialog).toBeHidden();
    await expect(booking.getByTestId('booking-status')).toHaveText('Cancelled');
    await expect(booking.getByRole('button', { name: /Cancel booking/ })).toHaveCount(0);

    // A new booking of one seat, which the organiser's cancellation will hit later.
    await customer.goto(`/#/events/${encodeURIComponent(eventId)}`);
    await expect(customer.getByTestId('availability')).toHaveText(`${CAPACITY} of ${CAPACITY} seats left`);
    await customer.getByRole('button', { name: 'Book 1 seat' }).click();
    await expect(customer.getByTestId('confirmation')).toContainText('Booking confirmed');
    await expect(customer.getByTestId('availability')).toHaveText(`${CAPACITY - 1} of ${CAPACITY} seats left`);
  });

  test('a guest books until sold out, and the open page of the first customer follows live', async () => {
    await guest.goto(`/#/events/${encodeURIComponent(eventId)}`);
    await expect(guest.getByTestId('availability')).toHaveText(`${CAPACITY - 1} of ${CAPACITY} seats left`);
    await expect(guest.getByRole('button', { name: 'Book 1 seat' })).toBeVisible();

    // No e-mail: the form says what is missing.
    await guest.getByRole('button', { name: 'Book 1 seat' }).click();
    await expect(guest.getByRole('alert')).toContainText('Enter your e-mail address');

    await guest.getByLabel('Your e-mail').fill(guestEmail);
    await guest.getByLabel('Seats').selectOption('3');
    await guest.getByRole('button', { name: 'Book 3 seats' }).click();
    await expect(guest.getByTestId('confirmation')).toContainText(guestEmail);
    await expect(guest.getByTestId('availability')).toHaveText(`2 of ${CAPACITY} seats left`);
    // The customer's page was not reloaded; it polls.
    await expect(customer.getByTestId('availability')).toHaveText(`2 of ${CAPACITY} seats left`);

    // The confirmation links to the booking's own page, opened by its token; without the token
    // the same page shows nothing of the booking.
    const link = guest.getByTestId('guest-link').getByRole('link', { name: 'open your booking' });
    const bookingUrl = (await link.getAttribute('href')) ?? '';
    expect(bookingUrl).toMatch(/^#\/bookings\/[^?]+\?token=[0-9a-f]{32}$/);
    await link.click();
    const bookingPage = guest.getByTestId('booking-page');
    await expect(bookingPage).toContainText('3 seats');
    await expect(bookingPage).toContainText(guestEmail);
    await expect(bookingPage.getByTestId('booking-status')).toHaveText('Active');
    await shot(guest, 'guest-booking-page');
    await bookingPage.getByRole('button', { name: 'Cancel booking' }).click();
    await guest.getByRole('dialog').getByRole('button', { name: 'Yes, cancel booking' }).click();
    await expect(bookingPage.getByTestId('booking-status')).toHaveText('Cancelled');
    await expect(customer.getByTestId('availability')).toHaveText(`5 of ${CAPACITY} seats left`);
    await guest.goto(`/${bookingUrl.replace(/\?token=.*$/, '')}`);
    await expect(guest.getByRole('heading', { name: 'This link does not open a booking' })).toBeVisible();
    await expect(guest.locator('main')).not.toContainText(guestEmail);

    // The guest books the 3 seats again, and then the rest.
    await guest.goto(`/#/events/${encodeURIComponent(eventId)}`);
    await guest.getByLabel('Your e-mail').fill(guestEmail);
    await guest.getByLabel('Seats').selectOption('3');
    await guest.getByRole('button', { name: 'Book 3 seats' }).click();
    await expect(guest.getByTestId('confirmation')).toContainText(guestEmail);
    await expect(guest.getByTestId('availability')).toHaveText(`2 of ${CAPACITY} seats left`);

    await guest.getByRole('button', { name: 'Book more seats' }).click();
    await expect(guest.getByLabel('Seats').locator('option')).toHaveCount(2);
    await guest.getByLabel('Your e-mail').fill(guestEmail);
    await guest.getByLabel('Seats').selectOption('2');
    await guest.getByRole('button', { name: 'Book 2 seats' }).click();
    await expect(guest.getByTestId('confirmation')).toContainText('Booking confirmed');
    await expect(guest.getByTestId('availability')).toHaveText('Sold out');
    await guest.getByRole('button', { name: 'Book more seats' }).click();
    await expect(guest.getByTestId('sold-out')).toContainText('Sold out');
    await shot(guest, 'sold-out');

    await expect(customer.getByTestId('availability')).toHaveText('Sold out');

    await guest.goto('/');
    const card = guest.getByTestId('event-card').filter({ hasText: EVENT });
    await expect(card).toContainText('Sold out');
    await expect(card.getByRole('link', { name: `Book ${EVENT}` })).toHaveCount(0);
  });

  test('the organiser sees the sales and cancels the event after confirming', async () => {
    await organiser.goto('/#/admin');
    const row = organiser.getByTestId('admin-event-row').filter({ hasText: EVENT });
    await expect(row.getByTestId('seats-sold')).toHaveText(`${CAPACITY} / ${CAPACITY}`, { timeout: 15_000 });
    const unbooked = organiser.getByTestId('admin-event-row').filter({ hasText: 'Chamber Orchestra' });
    await expect(unbooked.getByTestId('seats-sold')).toHaveText('0 / 250');
    await shot(organiser, 'organiser-sales');

    // Cancel the comedy night too, so that the list shows a cancelled event.
    const comedy = organiser.getByTestId('admin-event-row').filter({ hasText: 'Stand-up Comedy Open Mic' });
    await comedy.getByRole('button', { name: /Cancel event/ }).click();
    let dialog = organiser.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Keep event' }).click();
    await expect(dialog).toBeHidden();
    await expect(comedy).toContainText('On sale');
    await comedy.getByRole('button', { name: /Cancel event/ }).click();
    await organiser.getByRole('dialog').getByRole('button', { name: 'Yes, cancel event' }).click();
    await expect(comedy).toContainText('Cancelled');

    await row.getByRole('button', { name: `Cancel event ${EVENT}` }).click();
    dialog = organiser.getByRole('dialog', { name: `Cancel “${EVENT}”?` });
    await expect(dialog).toContainText(`${CAPACITY} sold seats will be cancelled`);
    await shot(organiser, 'organiser-cancel-confirm', false);
    await dialog.getByRole('button', { name: 'Yes, cancel event' }).click();
    await expect(dialog).toBeHidden();
    await expect(row).toContainText('Cancelled');
    await expect(row.getByRole('button', { name: /Cancel event/ })).toHaveCount(0);
  });

  test("the customer's booking shows as event cancelled", async () => {
    // The open event page learns it at its next poll.
    await expect(customer.getByTestId('availability')).toHaveText('This event has been cancelled');

    await customer.getByRole('link', { name: 'My bookings' }).first().click();
    const bookings = customer.getByTestId('booking').filter({ hasText: EVENT });
    await expect(bookings).toHaveCount(2);
    // Bookings are cancelled by the bookings service when the event's cancellation reaches it.
    await expect(bookings.getByTestId('booking-status').filter({ hasText: 'Event cancelled' })).toHaveCount(1, { timeout: 20_000 });
    await expect(bookings.getByTestId('booking-status').filter({ hasText: /^Cancelled$/ })).toHaveCount(1);
    await expect(customer.getByRole('button', { name: /Cancel booking/ })).toHaveCount(0);
    await shot(customer, 'my-bookings-event-cancelled');

    await customer.goto('/');
    await expect(customer.getByTestId('event-card').filter({ hasText: EVENT })).toContainText('Cancelled');
    await expect(customer.getByTestId('event-card').filter({ hasText: 'Stand-up Comedy' })).toContainText('Cancelled');
    await shot(customer, 'event-list-after');
  });

  test('pages fit a phone screen', async ({ browser }) => {
    const phone = await newPage(browser, { width: 390, height: 844 });
    await signIn(phone, alice.email, alice.password);
    await expect(phone.getByText(alice.name)).toBeVisible();
    await phone.goto('/');
    await expect(phone.getByTestId('event-card').first()).toBeVisible();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await shot(phone, 'phone-event-list');
    await phone.getByTestId('event-card').filter({ hasText: 'Chamber Orchestra' }).getByRole('link', { name: /^Book/ }).click();
    await expect(phone.getByRole('button', { name: 'Book 1 seat' })).toBeVisible({ timeout: 15_000 });
    await shot(phone, 'phone-event-page');
  });
});
