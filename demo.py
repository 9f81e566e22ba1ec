r"""The web demo, "This Flower Does Not Exist" on a flowergan run (pip install -e ".[demo]"):

  streamlit run demo.py -- --workdir=runs/demo [--step=N]

The page is flowergan/demo_page.py, its logic flowergan/demo_app.py.
"""

from flowergan import demo_page

demo_page.render()
