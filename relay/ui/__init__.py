"""What every page shares: the HTML page frame and its templates (`html`), and the cause-and-fix
words for each error (`fixes`)."""
