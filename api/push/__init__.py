"""Web Push subscriptions: the browser's half of the push notification channel."""
