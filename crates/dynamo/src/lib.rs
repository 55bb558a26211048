//! DynamoDB storage shared by every MyEvents service.
