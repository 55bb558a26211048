import { describe, expect, it } from 'vitest';
import { newEventBody, type EventFormFields } from './eventForm';
import type { Location } from './types';

const opera: Location = {
  ID: 'l1',
  Name: 'Opera',
  Address: '',
  Country: '',
  OpenTime: 0,
  CloseTime: 24,
  Halls: [{ name: 'Main', location: '', capacity: 100 }],
};

const fields = (over: Partial<EventFormFields> = {}): EventFormFields => ({
  name: ' Tosca ',
  location: opera,
  hall: opera.Halls[0],
  start: 1000,
  end: 1000 + 7200,
  duration: '120',
  capacity: '',
  seatsPerCustomer: '',
  ...over,
});

describe('newEventBody', () => {
  it('sends no limit of seats per customer when it is left empty', () => {
    expect(newEventBody(fields())).toEqual({
      Name: 'Tosca',
      Duration: 120,
      StartDate: 1000,
      EndDate: 8200,
      Location: { ID: 'l1' },
      Hall: 'Main',
    });
  });

  it('sends the limit of seats per customer when given', () => {
    const body = newEventBody(fields({ seatsPerCustomer: '4' }));
    expect(body).toMatchObject({ SeatsPerCustomer: 4 });
    expect(newEventBody(fields({ capacity: '50', seatsPerCustomer: '50' }))).toMatchObject({ Capacity: 50, SeatsPerCustomer: 50 });
  });

  it('refuses a limit that is not a whole number from 1 to the capacity', () => {
    for (const [capacity, seatsPerCustomer] of [['', '0'], ['', '-1'], ['', '2.5'], ['', 'x'], ['', '101'], ['50', '51']]) {
      const v = newEventBody(fields({ capacity, seatsPerCustomer }));
      expect(typeof v, `${capacity}/${seatsPerCustomer}`).toBe('string');
      expect(v).toContain('Seats per customer');
    }
  });

  it('still checks the other fields', () => {
    expect(newEventBody(fields({ name: ' ' }))).toBe('Enter the name of the event.');
    expect(newEventBody(fields({ end: 1000 }))).toBe('The end must be after the start.');
    expect(newEventBody(fields({ capacity: '101' }))).toContain('has only 100 seats');
  });
});
