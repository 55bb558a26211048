//! MongoDB storage shared by every MyEvents service.
