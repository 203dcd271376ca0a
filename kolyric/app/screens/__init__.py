"""The app's screens: the playground, training, the model picker and small dialogs."""
